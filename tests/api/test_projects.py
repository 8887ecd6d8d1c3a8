"""Isolation between projects through the real app, on every read and write path.

Two projects, each with a key that may send, read and act on emails (but not `admin`),
and an admin key: each project's key sees and touches only its own project's emails (the
log's items, `pagination.total` and today's report, one email, retry, cancel, requeue,
idempotency replays); the admin key sees every project's and may narrow to one.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.emails.models import Email
from mailroom.projects.service import create_project
from mailroom.settings import Settings
from tests.api.shapes import DETAIL_KEYS, ITEM_KEYS, assert_error
from tests.conftest import api_client
from tests.support.factories import email_in, insert_emails, stored_emails

pytestmark = pytest.mark.usefixtures("clean")

TENANT_SCOPES = (Scope.SEND, Scope.LOGS_READ, Scope.EMAILS_WRITE)
EMAIL: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi"}


@dataclass
class Tenant:
    """A project, a key of it without `admin`, and the emails it holds by status."""

    name: str
    id: uuid.UUID
    key: str
    emails: dict[str, list[uuid.UUID]] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        return {str(i) for ids in self.emails.values() for i in ids}

    def count(self, *statuses: str) -> int:
        return sum(len(ids) for status, ids in self.emails.items() if status in statuses)


async def _key(
    sessions: async_sessionmaker[AsyncSession],
    project: str,
    scopes: tuple[Scope, ...] = TENANT_SCOPES,
    **options: Any,
) -> str:
    async with sessions() as session:
        _, key = await create_key(
            session, name=f"key-{secrets.token_hex(6)}", scopes=scopes, project=project, **options
        )
        await session.commit()
    return key


async def _tenant(
    sessions: async_sessionmaker[AsyncSession], prefix: str, counts: dict[str, int]
) -> Tenant:
    name = f"{prefix}-{secrets.token_hex(4)}"
    async with sessions() as session:
        project = await create_project(session, name)
        await session.commit()
    tenant = Tenant(name, project.id, await _key(sessions, name))
    rows: list[Email] = []
    for status, n in counts.items():
        made = [
            email_in(
                status,
                created_at=_today() - timedelta(seconds=len(rows) + i),
                project_id=project.id,
                to_addrs=[f"{prefix}@example.com"],
                recipients=[f"{prefix}@example.com"],
            )
            for i in range(n)
        ]
        tenant.emails[status] = [e.id for e in made]
        rows += made
    await insert_emails(sessions, *rows)
    return tenant


def _today() -> datetime:
    """Now, or two minutes into the day if it has just begun: every email made here is
    created today (UTC), which today's report counts."""
    now = datetime.now(UTC)
    return max(now, now.replace(hour=0, minute=2, second=0, microsecond=0))


@pytest.fixture
async def tenants(sessions: async_sessionmaker[AsyncSession], clean: None) -> tuple[Tenant, Tenant]:
    # Different numbers in each status, so that no count can be right by accident.
    a = await _tenant(sessions, "alpha", {"failed": 3, "sent": 2, "queued": 1, "scheduled": 1})
    b = await _tenant(sessions, "beta", {"failed": 2, "sent": 4, "retrying": 1})
    return a, b


@pytest.fixture
async def admin_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await _key(sessions, "default", (*TENANT_SCOPES, Scope.ADMIN))


@pytest.fixture
async def callers(
    settings: Settings, tenants: tuple[Tenant, Tenant], admin_key: str
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """The API as each key calls it: project A's, project B's and the admin's."""
    keys = {"a": tenants[0].key, "b": tenants[1].key, "admin": admin_key}
    async with AsyncExitStack() as stack:
        yield {
            who: await stack.enter_async_context(api_client(settings, key=key))
            for who, key in keys.items()
        }


@pytest.fixture
def as_a(callers: dict[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    return callers["a"]


@pytest.fixture
def as_b(callers: dict[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    return callers["b"]


@pytest.fixture
def as_admin(callers: dict[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    return callers["admin"]


async def _page(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/logs/email", params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _summary(*tenants: Tenant) -> dict[str, int]:
    total = sum(t.count(*t.emails) for t in tenants)
    sent, failed = (sum(t.count(s) for t in tenants) for s in ("sent", "failed"))
    return {"total": total, "sent": sent, "failed": failed, "cancelled": 0}


# -- accepting: an email belongs to its key's project ------------------------------------


async def test_an_email_belongs_to_the_project_of_the_key_that_sent_it(
    as_a: httpx.AsyncClient,
    as_b: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a, b = tenants
    one = (await as_a.post("/send", json=EMAIL)).json()
    batch = (await as_b.post("/send/batch", json={"emails": [EMAIL, EMAIL]})).json()
    # With an Idempotency-Key or attachments, /send takes another path (its own transaction).
    alone = await as_b.post("/send", json=EMAIL, headers={"Idempotency-Key": "k-1"})
    assert alone.status_code == 202, alone.text
    ids = {
        uuid.UUID(one["id"]): a,
        **{uuid.UUID(item["id"]): b for item in batch["data"]},
        uuid.UUID(alone.json()["id"]): b,
    }
    stored = await stored_emails(sessions, list(ids))
    assert {i: e.project_id for i, e in stored.items()} == {i: t.id for i, t in ids.items()}

    detail = (await as_a.get(f"/emails/{one['id']}")).json()
    assert set(detail) == DETAIL_KEYS
    assert detail["project"] == a.name
    listed = (await _page(as_b))["data"]
    assert {item["project"] for item in listed} == {b.name}


# -- reading: the log, its total and report, one email -----------------------------------


@pytest.mark.parametrize("which", [0, 1])
async def test_a_key_lists_counts_and_reports_only_its_own_project(
    settings: Settings, tenants: tuple[Tenant, Tenant], which: int
) -> None:
    mine = tenants[which]
    async with api_client(settings, key=mine.key) as client:
        page = await _page(client)
        assert {item["id"] for item in page["data"]} == mine.ids
        assert all(set(item) == ITEM_KEYS for item in page["data"])
        assert {item["project"] for item in page["data"]} == {mine.name}
        assert page["pagination"]["total"] == len(mine.ids)
        summary = page["summary"]
        assert {k: summary[k] for k in ("total", "sent", "failed", "cancelled")} == _summary(mine)

        # Each way of counting: from the counters by status, row by row for a recipient
        # and for a range that does not start on a 15-minute boundary.
        failed = await _page(client, status="failed")
        assert {i["id"] for i in failed["data"]} == {str(i) for i in mine.emails["failed"]}
        assert failed["pagination"]["total"] == mine.count("failed")
        # Not on a bucket boundary: the partial bucket is counted row by row.
        since = (_today() - timedelta(minutes=3, seconds=7, microseconds=1)).isoformat()
        ranged = await _page(client, since=since)
        assert ranged["pagination"]["total"] == len(mine.ids)
        for tenant in tenants:
            by_recipient = await _page(client, to=f"{tenant.name.split('-')[0]}@example.com")
            expected = len(mine.ids) if tenant is mine else 0
            assert by_recipient["pagination"]["total"] == expected
            assert len(by_recipient["data"]) == expected

        # Following the cursor never leaves the project either.
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            step = (await client.get("/logs/email", params=params)).json()
            seen += [item["id"] for item in step["data"]]
            if not step["pagination"]["hasMore"]:
                break
            params = {"limit": 2, "cursor": step["pagination"]["nextCursor"]}
        assert sorted(seen) == sorted(mine.ids)


async def test_another_projects_email_is_not_found_as_if_it_did_not_exist(
    as_a: httpx.AsyncClient, as_b: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    theirs = b.emails["failed"][0]
    missing = uuid.uuid4()
    for path in ("/emails/{}", "/emails/{}/retry", "/emails/{}/cancel"):
        method = as_a.get if path == "/emails/{}" else as_a.post
        answers = [await method(path.format(email_id)) for email_id in (theirs, missing)]
        errors = [assert_error(r, 404, "not_found") for r in answers]
        # The same answer, but for the id it names: nothing tells the two apart.
        assert errors[0]["message"].replace(str(theirs), "ID") == errors[1]["message"].replace(
            str(missing), "ID"
        )
    # Its own project's key still sees it untouched.
    detail = (await as_b.get(f"/emails/{theirs}")).json()
    assert (detail["status"], detail["project"]) == ("failed", b.name)
    scheduled = a.emails["scheduled"][0]
    assert_error(await as_b.post(f"/emails/{scheduled}/cancel"), 404, "not_found")
    assert (await as_a.get(f"/emails/{scheduled}")).json()["status"] == "scheduled"


async def test_a_key_retries_and_cancels_its_own_projects_emails(
    as_a: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    retried = await as_a.post(f"/emails/{a.emails['failed'][0]}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["project"]) == ("queued", a.name)
    cancelled = await as_a.post(f"/emails/{a.emails['scheduled'][0]}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["project"]) == ("cancelled", a.name)
    # A refusal for its status still names it: the email is the caller's to know about.
    refused = await as_a.post(f"/emails/{a.emails['sent'][0]}/cancel")
    assert assert_error(refused, 409, "conflict")["details"] == {"status": "sent"}


async def test_a_requeue_selects_only_the_callers_projects_failed_emails(
    as_a: httpx.AsyncClient,
    as_b: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    a, b = tenants
    dry = (await as_b.post("/emails/requeue", json={"dryRun": True})).json()
    assert dry["matched"] == b.count("failed")
    done = (await as_b.post("/emails/requeue", json={})).json()
    assert (done["matched"], done["requeued"], done["hasMore"]) == (b.count("failed"), 2, False)
    stored = await stored_emails(sessions)
    assert {stored[i].status for i in b.emails["failed"]} == {"queued"}
    assert {stored[i].status for i in a.emails["failed"]} == {"failed"}
    # B's failed emails are gone from its count; A's are all still there.
    assert (await as_b.post("/emails/requeue", json={"dryRun": True})).json()["matched"] == 0
    assert (await as_a.post("/emails/requeue", json={"dryRun": True})).json()["matched"] == 3


async def test_idempotency_keys_are_per_api_key_so_never_shared_across_projects(
    as_a: httpx.AsyncClient,
    as_b: httpx.AsyncClient,
    tenants: tuple[Tenant, Tenant],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    a, b = tenants
    headers = {"Idempotency-Key": "order-1"}
    first_a = await as_a.post("/send", json=EMAIL, headers=headers)
    first_b = await as_b.post("/send", json=EMAIL, headers=headers)
    assert (first_a.status_code, first_b.status_code) == (202, 202)
    assert first_a.json()["id"] != first_b.json()["id"]
    assert "Idempotent-Replayed" not in first_b.headers
    replay_a = await as_a.post("/send", json=EMAIL, headers=headers)
    replay_b = await as_b.post("/send", json=EMAIL, headers=headers)
    assert replay_a.headers["Idempotent-Replayed"] == "true"
    assert replay_b.headers["Idempotent-Replayed"] == "true"
    assert (replay_a.json()["id"], replay_b.json()["id"]) == (
        first_a.json()["id"],
        first_b.json()["id"],
    )
    stored = await stored_emails(sessions)
    assert stored[uuid.UUID(first_a.json()["id"])].project_id == a.id
    assert stored[uuid.UUID(first_b.json()["id"])].project_id == b.id
    # Scoped to the key, as ever: another key of the same project starts afresh.
    async with api_client(settings, key=await _key(sessions, a.name)) as other_a:
        again = await other_a.post("/send", json=EMAIL, headers=headers)
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first_a.json()["id"]


# -- naming a project ---------------------------------------------------------------------


async def test_a_key_may_name_its_own_project_and_no_other(
    as_a: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    own = await _page(as_a, project=a.name)
    assert own["pagination"]["total"] == len(a.ids)
    requeue_own = await as_a.post(
        "/emails/requeue", params={"project": a.name}, json={"dryRun": True}
    )
    assert requeue_own.json()["matched"] == a.count("failed")

    # Another project, existing or not: the same 403, so nobody learns which names exist.
    messages = []
    for name in (b.name, "no-such-project"):
        for response in (
            await as_a.get("/logs/email", params={"project": name}),
            await as_a.post("/emails/requeue", params={"project": name}, json={"dryRun": True}),
        ):
            messages.append(assert_error(response, 403, "forbidden")["message"])
            assert name not in response.text
    assert len(set(messages)) == 1, messages
    assert a.name in messages[0] and "admin" in messages[0]


@pytest.mark.parametrize("name", ["Alpha", "has space", "", "x" * 65, "../etc"])
async def test_a_project_that_is_not_a_name_is_a_validation_error(
    as_a: httpx.AsyncClient, name: str
) -> None:
    assert_error(await as_a.get("/logs/email", params={"project": name}), 422, "validation_error")
    response = await as_a.post("/emails/requeue", params={"project": name}, json={})
    assert_error(response, 422, "validation_error")


# -- an admin key --------------------------------------------------------------------------


async def test_an_admin_key_sees_every_project_and_can_narrow_to_one(
    as_admin: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    everything = await _page(as_admin)
    assert {item["id"] for item in everything["data"]} == a.ids | b.ids
    projects = {item["id"]: item["project"] for item in everything["data"]}
    assert {projects[i] for i in a.ids} == {a.name} and {projects[i] for i in b.ids} == {b.name}
    assert everything["pagination"]["total"] == len(a.ids) + len(b.ids)
    summary = everything["summary"]
    assert {k: summary[k] for k in ("total", "sent", "failed", "cancelled")} == _summary(a, b)

    for tenant in tenants:
        narrowed = await _page(as_admin, project=tenant.name)
        assert {item["id"] for item in narrowed["data"]} == tenant.ids
        assert narrowed["pagination"]["total"] == len(tenant.ids)
        assert narrowed["summary"]["total"] == _summary(tenant)["total"]
        failed = await _page(as_admin, project=tenant.name, status="failed")
        assert failed["pagination"]["total"] == tenant.count("failed")
    error = assert_error(
        await as_admin.get("/logs/email", params={"project": "no-such-project"}), 404, "not_found"
    )
    assert "no-such-project" in error["message"]


async def test_an_admin_key_acts_on_any_project_and_requeues_one_or_all(
    as_admin: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    detail = (await as_admin.get(f"/emails/{a.emails['sent'][0]}")).json()
    assert detail["project"] == a.name
    retried = (await as_admin.post(f"/emails/{b.emails['failed'][0]}/retry")).json()
    assert (retried["status"], retried["project"]) == ("queued", b.name)
    cancelled = (await as_admin.post(f"/emails/{a.emails['queued'][0]}/cancel")).json()
    assert (cancelled["status"], cancelled["project"]) == ("cancelled", a.name)

    dry = {"dryRun": True}
    only_a = await as_admin.post("/emails/requeue", params={"project": a.name}, json=dry)
    assert only_a.json()["matched"] == 3
    every = await as_admin.post("/emails/requeue", json=dry)
    assert every.json()["matched"] == 3 + 1
    unknown = await as_admin.post("/emails/requeue", params={"project": "nope"}, json=dry)
    assert_error(unknown, 404, "not_found")
    done = await as_admin.post("/emails/requeue", params={"project": a.name}, json={})
    assert done.json()["requeued"] == 3
    assert (await as_admin.post("/emails/requeue", json=dry)).json()["matched"] == 1


async def test_the_admin_scope_grants_nothing_by_itself(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await _key(sessions, "default", (Scope.ADMIN,))
    async with api_client(settings, key=key) as client:
        response = await client.get("/logs/email")
        assert "logs:read" in assert_error(response, 403, "forbidden")["message"]
        response = await client.post("/emails/requeue", json={"dryRun": True})
        assert "emails:write" in assert_error(response, 403, "forbidden")["message"]


# -- what stays per key --------------------------------------------------------------------


async def test_rate_limits_stay_per_key_within_a_project(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    limited = await _key(sessions, a.name, (Scope.SEND,), rate_limit="1/minute")
    async with api_client(settings, key=limited) as client:
        assert (await client.post("/send", json=EMAIL)).status_code == 202
        assert_error(await client.post("/send", json=EMAIL), 429, "rate_limited")
    async with api_client(settings, key=a.key) as client:
        assert (await client.post("/send", json=EMAIL)).status_code == 202
