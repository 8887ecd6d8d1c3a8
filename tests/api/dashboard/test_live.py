"""The emails page's live stream (server-sent events) over a real server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.dashboard import live
from mailroom.api.dashboard.session import COOKIE
from mailroom.auth.service import revoke_key
from mailroom.emails.log_query import encode_cursor
from mailroom.emails.log_repository import Position
from mailroom.settings import Settings
from tests.api.dashboard.conftest import csrf_of, sign_in
from tests.conftest import make_key
from tests.support.factories import email_in, insert_emails, key_id, update_email
from tests.support.live_server import LiveServer, serving

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture(scope="module")
async def server(settings_factory: Callable[..., Settings]) -> AsyncIterator[LiveServer]:
    async with serving(settings_factory(api_key_cache_seconds=0)) as live:
        yield live


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


async def _next(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    return await asyncio.wait_for(anext(events), timeout=10)


async def test_new_emails_and_status_changes_arrive_at_most_once_a_second(
    server: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions)
    queued = email_in("queued", subject="Watched")
    await insert_emails(sessions, queued)
    start = encode_cursor(Position(queued.created_at, queued.id))
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        await sign_in(client, key)
        params = {"after": start, "ids": str(queued.id), "status": ""}
        async with client.stream("GET", "/dashboard/emails/live", params=params) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _events(response)
            event, first = await _next(events)  # the watched email as it is now
            assert event == "update"
            assert [c["id"] for c in first["changed"]] == [str(queued.id)]
            assert first["new"] == []

            fresh = email_in("sent", subject="<b>New</b>")
            await insert_emails(sessions, fresh)
            await update_email(sessions, queued.id, status="sending", attempts=1)
            arrived = datetime.now(UTC)
            _, second = await _next(events)
            seen = {c["id"] for c in second["changed"]} | {n["id"] for n in second["new"]}
            while seen != {str(queued.id), str(fresh.id)}:
                _, more = await _next(events)
                seen |= {c["id"] for c in more["changed"]} | {n["id"] for n in more["new"]}
            assert "&lt;b&gt;New&lt;/b&gt;" in json.dumps(second) or "<b>" not in json.dumps(second)
            assert (datetime.now(UTC) - arrived).total_seconds() < 5


async def test_the_stream_ends_when_the_key_is_revoked(
    server: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions)
    start = encode_cursor(Position(datetime.now(UTC), uuid.UUID(int=0)))
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        await sign_in(client, key)
        async with client.stream(
            "GET", "/dashboard/emails/live", params={"after": start}
        ) as response:
            events = _events(response)
            async with sessions() as session:
                await revoke_key(session, str(await key_id(sessions, key)))
                await session.commit()
            event, _ = await _next(events)
            assert event == "signout"


async def test_a_stream_opened_with_a_copied_cookie_ends_when_its_session_signs_out(
    server: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "SIGNOUT_CHECK", 0.0)  # look at every tick, not every 10 s
    key = await make_key(sessions)
    start = encode_cursor(Position(datetime.now(UTC), uuid.UUID(int=0)))
    async with (
        httpx.AsyncClient(base_url=server.base_url) as owner,
        httpx.AsyncClient(base_url=server.base_url) as copy,
    ):
        await sign_in(owner, key)
        copy.cookies.set(COOKIE, owner.cookies.get(COOKIE) or "", path="/dashboard")
        async with copy.stream(
            "GET", "/dashboard/emails/live", params={"after": start}
        ) as response:
            assert response.status_code == 200
            events = _events(response)
            page = await owner.get("/dashboard")
            signed_out = await owner.post("/dashboard/logout", data={"csrf": csrf_of(page)})
            assert signed_out.status_code == 303
            event, _ = await _next(events)
            assert event == "signout"


async def test_without_a_session_the_stream_is_refused(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        answer = await client.get("/dashboard/emails/live", headers={"Accept": "text/event-stream"})
    assert answer.status_code == 401


async def test_a_stream_gets_only_what_its_filters_and_project_select(
    server: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from mailroom.auth.scopes import Scope
    from mailroom.projects.service import create_project

    async with sessions() as session:
        other = await create_project(session, f"other-{uuid.uuid4().hex[:6]}")
        await session.commit()
    theirs_queued = email_in("queued", project_id=other.id)
    await insert_emails(sessions, theirs_queued)
    key = await make_key(sessions, (Scope.LOGS_READ,))
    start = encode_cursor(Position(datetime.now(UTC), uuid.UUID(int=0)))
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        await sign_in(client, key)
        params = {"after": start, "status": "failed", "ids": str(theirs_queued.id)}
        async with client.stream("GET", "/dashboard/emails/live", params=params) as response:
            events = _events(response)
            ours = email_in("failed", subject="Ours")
            await insert_emails(
                sessions,
                email_in("sent", subject="Sent, not failed"),
                email_in("failed", project_id=other.id, subject="Theirs"),
                ours,
            )
            await update_email(sessions, theirs_queued.id, status="retrying", attempts=1)
            last = email_in("failed", subject="Ours, later")
            await insert_emails(sessions, last)
            received: set[str] = set()
            while str(last.id) not in received:
                _, message = await _next(events)
                received |= {n["id"] for n in message["new"]}
                received |= {c["id"] for c in message["changed"]}
    assert received == {str(ours.id), str(last.id)}


def test_criteria_match_in_python_as_the_filter_does_in_sql() -> None:
    from mailroom.emails.log import Criteria, log_item
    from mailroom.emails.log_repository import Listed
    from mailroom.emails.states import EmailStatus

    now = datetime.now(UTC)
    item = log_item(
        Listed(
            email_in(
                "failed",
                to_addrs=["Jane <Jane@Example.com>"],
                subject="Invoice 42",
                sender="Billing <billing@example.com>",
                created_at=now,
                sandbox=False,
                cc_addrs=[],
                bcc_addrs=[],
                # Not read back from the database: the columns' server defaults, by hand.
                bounced=False,
                complained=False,
                suppressed_recipients=[],
            ),
            "default",
        )
    )
    assert Criteria().matches(item)
    assert Criteria(statuses=(EmailStatus.FAILED,), recipient="jane@example.com").matches(item)
    assert Criteria(sender_contains="BILLING", subject_contains="voice").matches(item)
    assert not Criteria(statuses=(EmailStatus.SENT,)).matches(item)
    assert not Criteria(recipient="bob@example.com").matches(item)
    assert not Criteria(subject_contains="receipt").matches(item)
    assert not Criteria(sender_contains="sales").matches(item)
    assert not Criteria(since=now + timedelta(seconds=1)).matches(item)
    assert not Criteria(until=now).matches(item)
    assert Criteria(since=now, until=now + timedelta(seconds=1)).matches(item)
