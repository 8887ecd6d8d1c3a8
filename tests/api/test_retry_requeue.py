"""POST /emails/{id}/retry and POST /emails/requeue through the real app.

Failed emails are made for real (a 550 from the in-process SMTP server, delivered by a
real worker) where the delivery matters, and inserted as rows where only the
selection does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bullmq import Queue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.emails.models import Email
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings
from tests.api.shapes import ITEM_KEYS, assert_error
from tests.conftest import api_client, make_key, running_worker
from tests.support.api_calls import email_detail
from tests.support.factories import email_in, insert_emails, stored_emails
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

EMAIL: dict[str, Any] = {"to": "jane@example.com", "subject": "Retry me", "text": "Hi there"}


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[Queue]:
    dispatcher = Dispatcher(settings)
    yield dispatcher.queue
    await dispatcher.aclose()


def _final(body: dict[str, Any]) -> bool:
    return body["status"] in ("sent", "failed")


async def _one(sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID) -> Email:
    [email] = (await stored_emails(sessions, [email_id])).values()
    return email


# -- retry ---------------------------------------------------------------------------------


async def test_a_failed_email_is_retried_and_delivered_with_both_attempts_logged(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.data_replies.append("550 5.1.1 <jane@example.com>: mailbox unavailable")
    async with running_worker(settings, smtp_server):
        accepted = (await client.post("/send", json=EMAIL)).json()
        failed = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="failure"
        )
        assert failed["status"] == "failed", failed
        assert smtp_server.handler.messages() == []

        response = await client.post(f"/emails/{accepted['id']}/retry")
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == ITEM_KEYS
        assert body["id"] == accepted["id"]
        assert body["status"] == "queued"
        assert body["failedAt"] is None and body["sentAt"] is None
        assert body["attempts"] == 1
        assert body["nextAttemptAt"] is not None
        assert body["messageId"] == accepted["messageId"]

        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="the retried delivery"
        )

    assert email["status"] == "sent", email
    assert email["sentAt"] is not None and email["failedAt"] is None
    assert email["error"] is None
    assert email["attempts"] == 2
    assert [(a["number"], a["outcome"], a["code"]) for a in email["deliveryAttempts"]] == [
        (1, "permanent", 550),
        (2, "accepted", 250),
    ]
    assert email["messageId"] == accepted["messageId"]
    [received] = smtp_server.handler.messages()
    assert received.parsed()["Message-ID"] == accepted["messageId"]

    summary = (await client.get("/logs/email")).json()["summary"]
    assert (summary["sent"], summary["failed"], summary["pending"]) == (1, 0, 0)


async def test_retrying_a_failed_row_queues_its_next_attempt(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], queue: Queue
) -> None:
    email = email_in("failed", attempts=3, request_id="req-original")
    await insert_emails(sessions, email)

    before = datetime.now(UTC)
    response = await client.post(f"/emails/{email.id}/retry")
    assert response.status_code == 200, response.text

    stored = await _one(sessions, email.id)
    assert stored.status == "queued"
    assert stored.failed_at is None
    assert (stored.attempts, stored.attempts_before_retry) == (3, 3)
    assert stored.next_attempt_at is not None
    assert stored.next_attempt_at >= before - timedelta(seconds=1)
    assert stored.message_id == email.message_id
    job = await queue.getJob(f"{email.id}-4")
    assert job is not None
    assert job.data == {"emailId": str(email.id), "attempt": 4, "requestId": "req-original"}
    assert job.opts.get("delay", 0) == 0


@pytest.mark.parametrize(
    "status", ["queued", "scheduled", "sending", "retrying", "sent", "cancelled"]
)
async def test_only_a_failed_email_can_be_retried(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    queue: Queue,
    status: str,
) -> None:
    email = email_in(status)
    await insert_emails(sessions, email)

    error = assert_error(await client.post(f"/emails/{email.id}/retry"), 409, "conflict")
    assert error["details"] == {"status": status}
    assert "failed" in error["message"]
    stored = await _one(sessions, email.id)
    assert (stored.status, stored.updated_at) == (status, email.updated_at)
    counts = await queue.getJobCounts("wait", "delayed")
    assert counts == {"wait": 0, "delayed": 0}


async def test_retrying_twice_is_409_the_second_time(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in("failed")
    await insert_emails(sessions, email)
    assert (await client.post(f"/emails/{email.id}/retry")).status_code == 200
    error = assert_error(await client.post(f"/emails/{email.id}/retry"), 409, "conflict")
    assert error["details"] == {"status": "queued"}


async def test_retrying_an_unknown_or_malformed_id_is_404(client: httpx.AsyncClient) -> None:
    for email_id in (str(uuid.uuid4()), "not-a-uuid", "42"):
        assert_error(await client.post(f"/emails/{email_id}/retry"), 404, "not_found")


async def test_retry_needs_a_key_with_emails_write(
    settings: Settings,
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    email = email_in("failed")
    await insert_emails(sessions, email)
    assert_error(await anonymous.post(f"/emails/{email.id}/retry"), 401, "unauthorized")
    key = await make_key(sessions, (Scope.SEND, Scope.LOGS_READ))
    async with api_client(settings, key=key) as limited:
        error = assert_error(await limited.post(f"/emails/{email.id}/retry"), 403, "forbidden")
        assert "emails:write" in error["message"]
    assert (await _one(sessions, email.id)).status == "failed"


# -- requeue: choosing -----------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def _failed(days_ago: float, to: str, code: int | None, **overrides: Any) -> Email:
    message = {None: "Connection refused", 451: "4.3.0 Try again later", 550: "5.1.1 No"}
    values: dict[str, Any] = {
        "to_addrs": [to],
        "recipients": [to.lower()],
        "last_error_code": code,
        "last_error_enhanced": None if code is None else f"{code // 100}.0.0",
        "last_error_message": message.get(code, "Rejected"),
    }
    values.update(overrides)
    return email_in("failed", created_at=NOW - timedelta(days=days_ago), **values)


@pytest.fixture
async def failed_mix(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Email]:
    """Four failed emails (each with its error class, time and recipient) and others."""
    emails = {
        "a": _failed(3, "jane@example.com", 550),
        "b": _failed(2, "carl@example.com", 451, attempts=5),
        "c": _failed(1, "jane@example.com", None),
        "d": _failed(1 / 24, "Jane@Example.com", 554),
        "sent": email_in("sent", created_at=NOW - timedelta(days=2)),
        "queued": email_in("queued", created_at=NOW - timedelta(days=2)),
        "cancelled": email_in("cancelled", created_at=NOW - timedelta(days=2)),
        "retrying": email_in("retrying", created_at=NOW - timedelta(days=2), last_error_code=451),
    }
    await insert_emails(sessions, *emails.values())
    return emails


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


@pytest.mark.parametrize(
    ("filters", "matching"),
    [
        pytest.param({}, "abcd", id="every-failed"),
        pytest.param({"status": "failed"}, "abcd", id="status-failed"),
        pytest.param({"errorClass": "5xx"}, "ad", id="5xx"),
        pytest.param({"errorClass": "4xx"}, "b", id="4xx"),
        pytest.param({"errorClass": "connection"}, "c", id="connection"),
        pytest.param({"to": "jane@example.com"}, "acd", id="to"),
        pytest.param({"to": "JANE@EXAMPLE.COM"}, "acd", id="to-any-case"),
        pytest.param({"to": "Jane Doe <jane@example.com>"}, "acd", id="to-named"),
        pytest.param({"to": "nobody@example.com"}, "", id="to-nobody"),
        pytest.param({"since": _iso(2.5)}, "bcd", id="since"),
        pytest.param({"until": _iso(1.5)}, "ab", id="until"),
        pytest.param({"since": _iso(2.5), "until": _iso(0.5)}, "bc", id="since-until"),
        pytest.param({"since": _iso(2)}, "bcd", id="since-is-inclusive"),
        pytest.param({"until": _iso(2)}, "a", id="until-is-exclusive"),
        pytest.param({"to": "jane@example.com", "errorClass": "5xx"}, "ad", id="to-and-5xx"),
        pytest.param(
            {"to": "jane@example.com", "errorClass": "5xx", "since": _iso(2)}, "d", id="all-three"
        ),
        pytest.param({"since": (NOW + timedelta(hours=1)).isoformat()}, "", id="future"),
    ],
)
async def test_a_dry_run_counts_the_failed_emails_the_filters_select_and_changes_nothing(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    queue: Queue,
    failed_mix: dict[str, Email],
    filters: dict[str, Any],
    matching: str,
) -> None:
    response = await client.post("/emails/requeue", json={**filters, "dryRun": True})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dryRun": True,
        "matched": len(matching),
        "requeued": 0,
        "hasMore": False,
    }
    stored = await stored_emails(sessions)
    assert {k: stored[e.id].status for k, e in failed_mix.items()} == {
        k: e.status for k, e in failed_mix.items()
    }
    assert await queue.getJobCounts("wait", "delayed") == {"wait": 0, "delayed": 0}

    # The same filters for real requeue exactly those.
    response = await client.post("/emails/requeue", json=filters)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dryRun": False,
        "matched": len(matching),
        "requeued": len(matching),
        "hasMore": False,
    }
    stored = await stored_emails(sessions)
    requeued = {k for k, e in failed_mix.items() if stored[e.id].status != e.status}
    assert requeued == set(matching)


async def test_a_requeue_queues_every_matching_email_with_its_next_attempt(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    queue: Queue,
    failed_mix: dict[str, Email],
) -> None:
    response = await client.post("/emails/requeue", json={})
    assert response.status_code == 200, response.text
    assert response.json() == {"dryRun": False, "matched": 4, "requeued": 4, "hasMore": False}

    stored = await stored_emails(sessions)
    for name in "abcd":
        email = stored[failed_mix[name].id]
        assert email.status == "queued", name
        assert email.failed_at is None
        assert email.attempts_before_retry == email.attempts
        assert email.next_attempt_at is not None
        job = await queue.getJob(f"{email.id}-{email.attempts + 1}")
        assert job is not None, name
        assert job.data["attempt"] == email.attempts + 1
    assert (await queue.getJobCounts("wait"))["wait"] == 4
    for name in ("sent", "queued", "cancelled", "retrying"):
        assert stored[failed_mix[name].id].status == failed_mix[name].status

    again = await client.post("/emails/requeue", json={})
    assert again.json() == {"dryRun": False, "matched": 0, "requeued": 0, "hasMore": False}


async def test_limit_caps_a_requeue_oldest_first_and_says_there_is_more(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    failed_mix: dict[str, Email],
) -> None:
    response = await client.post("/emails/requeue", json={"limit": 3})
    assert response.json() == {"dryRun": False, "matched": 4, "requeued": 3, "hasMore": True}
    stored = await stored_emails(sessions)
    assert [n for n in "abcd" if stored[failed_mix[n].id].status == "queued"] == ["a", "b", "c"]

    response = await client.post("/emails/requeue", json={"limit": 3})
    assert response.json() == {"dryRun": False, "matched": 1, "requeued": 1, "hasMore": False}


async def test_a_dry_run_with_a_limit_still_counts_them_all(
    client: httpx.AsyncClient, failed_mix: dict[str, Email]
) -> None:
    response = await client.post("/emails/requeue", json={"limit": 1, "dryRun": True})
    assert response.status_code == 200, response.text
    assert response.json()["matched"] == 4
    assert response.json()["requeued"] == 0


async def test_a_requeue_larger_than_one_transaction(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], queue: Queue
) -> None:
    count = 523  # more than REQUEUE_BATCH (500): more than one transaction
    emails = [_failed(1, f"r{n}@example.com", 550) for n in range(count)]
    await insert_emails(sessions, *emails)

    response = await client.post("/emails/requeue", json={})
    assert response.json() == {
        "dryRun": False,
        "matched": count,
        "requeued": count,
        "hasMore": False,
    }
    again = await client.post("/emails/requeue", json={"dryRun": True})
    assert again.json()["matched"] == 0

    stored = await stored_emails(sessions)
    assert {e.status for e in stored.values()} == {"queued"}
    assert (await queue.getJobCounts("wait"))["wait"] == count


async def test_requeued_emails_are_delivered_by_a_worker_continuing_their_attempts(
    client: httpx.AsyncClient,
    settings: Settings,
    smtp_server: SmtpTestServer,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    emails = [_failed(1, f"again{n}@example.com", 451, attempts=2) for n in range(3)]
    await insert_emails(sessions, *emails)
    async with running_worker(settings, smtp_server):
        response = await client.post("/emails/requeue", json={"errorClass": "4xx"})
        assert response.json()["requeued"] == 3

        async def statuses() -> list[str]:
            return [(await email_detail(client, str(e.id)))["status"] for e in emails]

        await eventually(statuses, lambda s: s == ["sent"] * 3, what="the requeued deliveries")

    for email in emails:
        detail = await email_detail(client, str(email.id))
        assert detail["attempts"] == 3
        assert [(a["number"], a["outcome"]) for a in detail["deliveryAttempts"]] == [
            (3, "accepted")
        ]
    received = sorted(m.envelope_to[0] for m in smtp_server.handler.messages())
    assert received == [f"again{n}@example.com" for n in range(3)]


# -- requeue: refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "queued"}, id="status-queued"),
        pytest.param({"status": "sent"}, id="status-sent"),
        pytest.param({"status": ["failed"]}, id="status-list"),
        pytest.param({"dry": True}, id="unknown-field"),
        pytest.param({"since": _iso(1), "until": _iso(1)}, id="until-equals-since"),
        pytest.param({"since": _iso(1), "until": _iso(2)}, id="until-before-since"),
        pytest.param({"since": 1700000000}, id="since-a-number"),
        pytest.param({"until": "1700000000"}, id="until-a-numeric-string"),
        pytest.param({"since": "yesterday"}, id="since-prose"),
        pytest.param({"errorClass": "3xx"}, id="error-class-unknown"),
        pytest.param({"errorClass": "5XX"}, id="error-class-upper-case"),
        pytest.param({"to": "not an address"}, id="to-invalid"),
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": 10_001}, id="limit-over-10000"),
        pytest.param({"limit": "many"}, id="limit-not-a-number"),
        pytest.param({"dryRun": "perhaps"}, id="dry-run-not-a-boolean"),
        pytest.param([], id="a-list"),
    ],
)
async def test_an_invalid_requeue_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    failed_mix: dict[str, Email],
    body: Any,
) -> None:
    response = await client.post("/emails/requeue", json=body)
    assert_error(response, 422, "validation_error")
    stored = await stored_emails(sessions)
    assert all(stored[failed_mix[n].id].status == "failed" for n in "abcd")


async def test_a_requeue_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/emails/requeue", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_request")


async def test_requeue_needs_a_key_with_emails_write(
    settings: Settings,
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    failed_mix: dict[str, Email],
) -> None:
    assert_error(await anonymous.post("/emails/requeue", json={}), 401, "unauthorized")
    key = await make_key(sessions, (Scope.SEND, Scope.LOGS_READ, Scope.METRICS_READ))
    async with api_client(settings, key=key) as limited:
        response = await limited.post("/emails/requeue", json={"dryRun": True})
        error = assert_error(response, 403, "forbidden")
        assert "emails:write" in error["message"]
        assert_error(await limited.post("/emails/requeue", json={}), 403, "forbidden")
    stored = await stored_emails(sessions)
    assert all(stored[failed_mix[n].id].status == "failed" for n in "abcd")

    writer = await make_key(sessions, (Scope.EMAILS_WRITE,))
    async with api_client(settings, key=writer) as client:
        response = await client.post("/emails/requeue", json={"dryRun": True})
        assert response.status_code == 200, response.text
        assert response.json()["matched"] == 4
