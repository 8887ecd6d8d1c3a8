"""Scheduled sends (`sendAt`) and POST /emails/{id}/cancel through the real app.

What the API stores and answers, and what it queues in Redis; the worker's side (a
scheduled email is not claimed early, a cancelled one is never delivered) is in
tests/worker/test_operations.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from bullmq import Queue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings
from tests.api.shapes import DETAIL_KEYS, ITEM_KEYS, assert_error
from tests.conftest import api_client, make_key
from tests.support.api_calls import email_detail, send_email
from tests.support.factories import email_in, insert_emails, stored_emails

pytestmark = pytest.mark.usefixtures("clean")

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Later", "text": "Hi there"}


def _at(delta: timedelta, *, tz: Any = UTC) -> str:
    return (datetime.now(UTC) + delta).astimezone(tz).isoformat()


def _zone(hours: int, minutes: int = 0) -> Any:
    return timezone(timedelta(hours=hours, minutes=minutes))


def _when(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[Queue]:
    """The BullMQ queue the app dispatches to, to look at the jobs it holds."""
    dispatcher = Dispatcher(settings)
    yield dispatcher.queue
    await dispatcher.aclose()


async def _summary(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/logs/email", params={"tz": "UTC"})
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()["summary"]
    return summary


async def _total(client: httpx.AsyncClient) -> int:
    response = await client.get("/logs/email")
    assert response.status_code == 200, response.text
    total: int = response.json()["pagination"]["total"]
    return total


# -- sendAt: what is refused ---------------------------------------------------------


def _naive_in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()


def _date_only_tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).date().isoformat()


@pytest.mark.parametrize(
    "send_at",
    [
        pytest.param(_naive_in_an_hour, id="naive-no-offset"),
        pytest.param(_date_only_tomorrow, id="date-only"),
        pytest.param(lambda: _at(timedelta(minutes=-1)), id="a-minute-ago"),
        pytest.param(lambda: _at(timedelta(days=-400)), id="last-year"),
        pytest.param(lambda: _at(timedelta(0)), id="now"),
        pytest.param(lambda: _at(timedelta(days=31)), id="31-days-ahead"),
        pytest.param(lambda: _at(timedelta(days=30, minutes=5)), id="just-over-30-days"),
        pytest.param(lambda: int((datetime.now(UTC) + timedelta(hours=1)).timestamp()), id="int"),
        pytest.param(
            lambda: (datetime.now(UTC) + timedelta(hours=1)).timestamp(), id="float-timestamp"
        ),
        pytest.param(
            lambda: str(int((datetime.now(UTC) + timedelta(hours=1)).timestamp())),
            id="numeric-string",
        ),
        pytest.param(lambda: "tomorrow at nine", id="prose"),
        pytest.param(lambda: "", id="empty-string"),
        pytest.param(lambda: True, id="boolean"),
        pytest.param(lambda: {"at": _at(timedelta(hours=1))}, id="object"),
        pytest.param(lambda: "9999-12-31T23:59:59-23:59", id="far-future-offset"),
    ],
)
async def test_a_send_at_that_is_not_a_future_instant_within_30_days_is_422(
    client: httpx.AsyncClient, send_at: Any
) -> None:
    response = await client.post("/send", json={**VALID, "sendAt": send_at()})
    error = assert_error(response, 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["sendAt"], error
    assert await _total(client) == 0


async def test_the_naive_time_error_says_an_offset_is_needed(client: httpx.AsyncClient) -> None:
    response = await client.post("/send", json={**VALID, "sendAt": _naive_in_an_hour()})
    error = assert_error(response, 422, "validation_error")
    assert "offset" in error["details"][0]["message"]


async def test_a_send_at_in_the_past_says_it_must_be_in_the_future(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/send", json={**VALID, "sendAt": _at(timedelta(hours=-1))})
    error = assert_error(response, 422, "validation_error")
    assert "future" in error["details"][0]["message"]


async def test_a_send_at_beyond_30_days_names_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/send", json={**VALID, "sendAt": _at(timedelta(days=31))})
    error = assert_error(response, 422, "validation_error")
    assert "30 days" in error["details"][0]["message"]


# -- sendAt: what is accepted --------------------------------------------------------


async def test_a_scheduled_send_is_202_scheduled_and_logged_with_send_at(
    client: httpx.AsyncClient,
) -> None:
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    # Given in another zone: the same instant comes back.
    given = send_at.astimezone(_zone(+5, 30)).isoformat()
    assert given.endswith("+05:30")

    accepted = await send_email(client, {**VALID, "sendAt": given})
    assert accepted["status"] == "scheduled"
    assert set(accepted) == {"id", "status", "messageId", "createdAt", "suppressed"}

    detail = await email_detail(client, accepted["id"])
    assert set(detail) == DETAIL_KEYS
    assert detail["status"] == "scheduled"
    assert _when(detail["sendAt"]) == send_at
    assert _when(detail["nextAttemptAt"]) == send_at
    assert detail["attempts"] == 0
    assert detail["deliveryAttempts"] == []
    assert (detail["sentAt"], detail["failedAt"], detail["cancelledAt"]) == (None, None, None)
    assert detail["sandbox"] is False
    assert detail["error"] is None

    log = (await client.get("/logs/email")).json()
    [item] = log["data"]
    assert set(item) == ITEM_KEYS
    assert item["status"] == "scheduled"
    assert _when(item["sendAt"]) == send_at
    assert _when(item["nextAttemptAt"]) == send_at


@pytest.mark.parametrize(
    "send_at",
    [
        pytest.param(lambda: _at(timedelta(seconds=30)), id="in-30-seconds"),
        pytest.param(lambda: _at(timedelta(days=29, hours=23)), id="just-under-30-days"),
        pytest.param(lambda: _at(timedelta(hours=1)).replace("+00:00", "Z"), id="z-suffix"),
        pytest.param(lambda: _at(timedelta(hours=1), tz=_zone(-8)), id="negative-offset"),
    ],
)
async def test_send_at_within_range_is_accepted(client: httpx.AsyncClient, send_at: Any) -> None:
    accepted = await send_email(client, {**VALID, "sendAt": send_at()})
    assert accepted["status"] == "scheduled"


async def test_send_at_null_sends_now(client: httpx.AsyncClient) -> None:
    accepted = await send_email(client, {**VALID, "sendAt": None})
    assert accepted["status"] == "queued"
    detail = await email_detail(client, accepted["id"])
    assert detail["sendAt"] is None


async def test_a_scheduled_email_counts_as_pending_and_filters_as_scheduled(
    client: httpx.AsyncClient,
) -> None:
    scheduled = await send_email(client, {**VALID, "sendAt": _at(timedelta(hours=1))})
    await send_email(client, VALID)

    assert await _summary(client) == {
        **await _summary(client),
        "total": 2,
        "sent": 0,
        "failed": 0,
        "cancelled": 0,
        "pending": 2,
    }
    listed = (await client.get("/logs/email", params={"status": "scheduled"})).json()
    assert [item["id"] for item in listed["data"]] == [scheduled["id"]]
    assert listed["pagination"]["total"] == 1


async def test_the_job_of_a_scheduled_email_waits_in_redis_until_send_at(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=3)
    accepted = await send_email(client, {**VALID, "sendAt": send_at.isoformat()})

    job = await queue.getJob(f"{accepted['id']}-1")
    assert job is not None
    assert job.name == "deliver"
    assert job.data["emailId"] == accepted["id"] and job.data["attempt"] == 1
    assert await queue.getJobState(job.id) == "delayed"
    # Delayed by sendAt - createdAt (the instant the API accepted it), to the millisecond.
    expected_ms = (send_at - _when(accepted["createdAt"])).total_seconds() * 1000
    assert abs(job.opts["delay"] - expected_ms) <= 2, (job.opts["delay"], expected_ms)
    assert abs(job.delay - expected_ms) <= 2
    # And so due (BullMQ's own clock) within a few ms of sendAt.
    due_ms = job.timestamp + job.delay
    assert abs(due_ms - send_at.timestamp() * 1000) < 1000


async def test_an_immediate_send_is_not_delayed(client: httpx.AsyncClient, queue: Queue) -> None:
    accepted = await send_email(client, VALID)
    # A plain POST /send goes out in a batch job shared with concurrent requests (see intake).
    job = await queue.getJob(f"batch-{accepted['id']}-1")
    assert job is not None
    assert job.name == "deliver-batch"
    assert job.data["emailIds"] == [accepted["id"]]
    assert job.opts.get("delay", 0) == 0
    assert await queue.getJobState(job.id) in ("waiting", "wait")


# -- sendAt in a batch -----------------------------------------------------------------


async def test_a_batch_mixing_scheduled_and_immediate_emails(
    client: httpx.AsyncClient, queue: Queue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    in_two_hours = datetime.now(UTC) + timedelta(hours=2)
    in_a_day = datetime.now(UTC) + timedelta(days=1)
    items = [
        {**VALID, "to": "now0@example.com"},
        {**VALID, "to": "later1@example.com", "sendAt": in_two_hours.isoformat()},
        {**VALID, "to": "now2@example.com"},
        {**VALID, "to": "later3@example.com", "sendAt": in_a_day.isoformat()},
        {**VALID, "to": "bad4@example.com", "sendAt": _at(timedelta(days=-1))},
    ]
    response = await client.post("/send/batch", json={"emails": items})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (4, 1)
    assert [r.get("status") for r in body["data"]] == [
        "queued",
        "scheduled",
        "queued",
        "scheduled",
        None,
    ]
    assert [d["field"] for d in body["data"][4]["error"]["details"]] == ["emails[4].sendAt"]
    now0, later1, now2, later3 = (body["data"][i]["id"] for i in range(4))

    # The immediate ones share one batch job, not delayed, carrying only them.
    batch_id = f"batch-{now0}-2"
    batch = await queue.getJob(batch_id)
    assert batch is not None, await queue.getJobs(["wait", "delayed"])
    assert batch.name == "deliver-batch"
    assert batch.data["emailIds"] == [now0, now2]
    assert batch.opts.get("delay", 0) == 0
    assert await queue.getJob(f"{now0}-1") is None
    assert await queue.getJob(f"{now2}-1") is None

    # Each scheduled one has its own single job, delayed until its sendAt.
    created = _when(body["data"][1]["createdAt"])
    for email_id, send_at in ((later1, in_two_hours), (later3, in_a_day)):
        job = await queue.getJob(f"{email_id}-1")
        assert job is not None, email_id
        assert job.name == "deliver"
        assert await queue.getJobState(job.id) == "delayed"
        expected_ms = (send_at - created).total_seconds() * 1000
        assert abs(job.opts["delay"] - expected_ms) <= 2
    counts = await queue.getJobCounts("wait", "delayed")
    assert (counts["wait"], counts["delayed"]) == (1, 2)

    stored = await stored_emails(sessions)
    by_id = {str(k): v for k, v in stored.items()}
    assert by_id[now0].batch_job_id == by_id[now2].batch_job_id == batch_id
    assert by_id[later1].batch_job_id is None and by_id[later3].batch_job_id is None
    assert (by_id[later1].status, by_id[later1].send_at) == ("scheduled", in_two_hours)
    assert by_id[later1].next_attempt_at == in_two_hours
    assert by_id[now0].status == "queued" and by_id[now0].send_at is None


async def test_a_batch_of_only_scheduled_emails_queues_no_batch_job(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    send_at = _at(timedelta(hours=1))
    items = [{**VALID, "to": f"later{n}@example.com", "sendAt": send_at} for n in range(3)]
    response = await client.post("/send/batch", json={"emails": items})
    assert response.status_code == 202, response.text
    ids = [item["id"] for item in response.json()["data"]]
    assert all(item["status"] == "scheduled" for item in response.json()["data"])
    counts = await queue.getJobCounts("wait", "delayed")
    assert (counts["wait"], counts["delayed"]) == (0, 3)
    for email_id in ids:
        assert await queue.getJob(f"{email_id}-1") is not None


# -- cancel: what may be cancelled -----------------------------------------------------


async def _cancel(client: httpx.AsyncClient, email_id: str) -> httpx.Response:
    return await client.post(f"/emails/{email_id}/cancel")


async def test_a_scheduled_email_is_cancelled(client: httpx.AsyncClient) -> None:
    send_at = _at(timedelta(hours=1))
    accepted = await send_email(client, {**VALID, "sendAt": send_at})

    before = datetime.now(UTC)
    response = await _cancel(client, accepted["id"])
    after = datetime.now(UTC)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == ITEM_KEYS
    assert body["id"] == accepted["id"]
    assert body["status"] == "cancelled"
    cancelled_at = _when(body["cancelledAt"])
    assert before - timedelta(seconds=1) <= cancelled_at <= after + timedelta(seconds=1)
    assert body["nextAttemptAt"] is None
    assert _when(body["sendAt"]) == _when(send_at)  # what was asked stays in the log
    assert body["messageId"] == accepted["messageId"]

    detail = await email_detail(client, accepted["id"])
    assert detail["status"] == "cancelled"
    assert detail["cancelledAt"] == body["cancelledAt"]
    assert detail["deliveryAttempts"] == []


async def test_a_queued_email_is_cancelled(client: httpx.AsyncClient) -> None:
    accepted = await send_email(client, VALID)  # no worker runs: it stays queued
    assert (await email_detail(client, accepted["id"]))["status"] == "queued"

    response = await _cancel(client, accepted["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelledAt"] is not None
    assert response.json()["sendAt"] is None


async def test_a_retrying_email_is_cancelled(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in("retrying", last_error_code=451, last_error_message="Try again later")
    await insert_emails(sessions, email)

    response = await _cancel(client, str(email.id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["cancelledAt"] is not None and body["nextAttemptAt"] is None
    assert body["attempts"] == 1
    # The last error stays: why it had not gone out yet.
    assert body["error"]["code"] == 451


@pytest.mark.parametrize("status", ["sending", "sent", "failed", "cancelled"])
async def test_an_email_past_waiting_cannot_be_cancelled(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], status: str
) -> None:
    email = email_in(status)
    await insert_emails(sessions, email)

    response = await _cancel(client, str(email.id))
    error = assert_error(response, 409, "conflict")
    assert error["details"] == {"status": status}
    assert status in error["message"]

    [stored] = (await stored_emails(sessions, [email.id])).values()
    assert stored.status == status
    assert stored.cancelled_at == email.cancelled_at
    assert stored.updated_at == email.updated_at


async def test_cancelling_twice_is_409_the_second_time(client: httpx.AsyncClient) -> None:
    accepted = await send_email(client, {**VALID, "sendAt": _at(timedelta(hours=1))})
    first = await _cancel(client, accepted["id"])
    assert first.status_code == 200, first.text

    second = await _cancel(client, accepted["id"])
    error = assert_error(second, 409, "conflict")
    assert error["details"] == {"status": "cancelled"}
    # The first cancellation's time stands.
    detail = await email_detail(client, accepted["id"])
    assert detail["cancelledAt"] == first.json()["cancelledAt"]


async def test_cancelling_an_unknown_email_is_404(client: httpx.AsyncClient) -> None:
    response = await _cancel(client, str(uuid.uuid4()))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("email_id", ["not-a-uuid", "12345", "0" * 40, "%20"])
async def test_cancelling_a_malformed_id_is_404(client: httpx.AsyncClient, email_id: str) -> None:
    response = await _cancel(client, email_id)
    assert_error(response, 404, "not_found")


async def test_cancel_without_a_key_is_401(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in("scheduled")
    await insert_emails(sessions, email)
    assert_error(await _cancel(anonymous, str(email.id)), 401, "unauthorized")
    bad = {"Authorization": "Bearer mr_not-a-real-key-at-all-0000000000000"}
    assert_error(
        await anonymous.post(f"/emails/{email.id}/cancel", headers=bad), 401, "unauthorized"
    )
    [stored] = (await stored_emails(sessions, [email.id])).values()
    assert stored.status == "scheduled"


async def test_cancel_needs_the_emails_write_scope(
    settings: Settings, clean: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in("scheduled")
    await insert_emails(sessions, email)
    key = await make_key(sessions, (Scope.SEND, Scope.LOGS_READ, Scope.METRICS_READ))
    async with api_client(settings, key=key) as limited:
        error = assert_error(await _cancel(limited, str(email.id)), 403, "forbidden")
        assert "emails:write" in error["message"]
        # Even for an id that does not exist: the scope is checked first.
        assert_error(await _cancel(limited, str(uuid.uuid4())), 403, "forbidden")
    [stored] = (await stored_emails(sessions, [email.id])).values()
    assert stored.status == "scheduled"

    writer = await make_key(sessions, (Scope.EMAILS_WRITE,))
    async with api_client(settings, key=writer) as client:
        response = await _cancel(client, str(email.id))
        assert response.status_code == 200, response.text


async def test_cancel_is_post_only(client: httpx.AsyncClient) -> None:
    accepted = await send_email(client, {**VALID, "sendAt": _at(timedelta(hours=1))})
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(method, f"/emails/{accepted['id']}/cancel")
        assert response.status_code in (404, 405), (method, response.text)
    assert (await email_detail(client, accepted["id"]))["status"] == "scheduled"


# -- cancel: the daily summary -----------------------------------------------------------


async def test_cancelled_emails_count_as_cancelled_not_pending(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    scheduled = await send_email(client, {**VALID, "sendAt": _at(timedelta(hours=1))})
    queued = await send_email(client, VALID)
    await send_email(client, {**VALID, "sendAt": _at(timedelta(hours=2))})
    await insert_emails(sessions, email_in("sent"), email_in("failed"))

    summary = await _summary(client)
    assert (summary["total"], summary["sent"], summary["failed"]) == (5, 1, 1)
    assert (summary["cancelled"], summary["pending"]) == (0, 3)

    for email_id in (scheduled["id"], queued["id"]):
        assert (await _cancel(client, email_id)).status_code == 200

    summary = await _summary(client)
    assert summary == {
        **summary,
        "total": 5,
        "sent": 1,
        "failed": 1,
        "cancelled": 2,
        "pending": 1,
    }
    listed = (await client.get("/logs/email", params={"status": "cancelled"})).json()
    assert sorted(item["id"] for item in listed["data"]) == sorted([scheduled["id"], queued["id"]])
    assert listed["pagination"]["total"] == 2
