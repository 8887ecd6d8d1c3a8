"""POST /send/batch through the real app: per-email results, what is stored, what is queued."""

from __future__ import annotations

import asyncio
import math
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.emails.models import Email
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import BATCH_JOB_NAME
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client, make_key
from tests.support.factories import batch_items, stored_emails

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}
ACCEPTED_KEYS = {"index", "id", "status", "messageId", "createdAt"}
REJECTED_KEYS = {"index", "error"}
JOB_STATES = ("waiting", "delayed", "active", "paused", "prioritized")


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


def _without(*keys: str, **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in VALID.items() if k not in keys}
    body.update(changes)
    return body


async def _batch(
    client: httpx.AsyncClient, emails: Any, *, key: str | None = None, **kwargs: Any
) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/send/batch", json={"emails": emails}, headers=headers, **kwargs)


def _accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"accepted", "rejected", "data"}
    assert [item["index"] for item in body["data"]] == list(range(len(body["data"])))
    assert body["accepted"] + body["rejected"] == len(body["data"])
    for item in body["data"]:
        if "error" in item:
            assert set(item) == REJECTED_KEYS, item
            error = item["error"]
            assert set(error) == {"code", "message", "details"}
            assert error["code"] == "validation_error"
            assert isinstance(error["message"], str) and error["message"]
            assert error["details"], item
            for detail in error["details"]:
                assert set(detail) == {"field", "message"}
                assert isinstance(detail["message"], str) and detail["message"]
        else:
            assert set(item) == ACCEPTED_KEYS, item
            assert item["status"] == "queued"
    assert body["accepted"] == sum("id" in item for item in body["data"])
    return body


def _ids(body: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(item["id"]) for item in body["data"] if "id" in item]


def _item_fields(item: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in item["error"]["details"]]


def _fields(response: httpx.Response) -> list[str]:
    error = assert_error(response, 422, "validation_error")
    details = error["details"]
    assert isinstance(details, list) and details
    for item in details:
        assert set(item) == {"field", "message"}
        assert isinstance(item["message"], str) and item["message"]
    return [item["field"] for item in details]


async def _stored(sessions: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, Email]:
    return await stored_emails(sessions)


async def _queued_jobs(dispatcher: Dispatcher) -> list[Any]:
    jobs: list[Any] = await dispatcher.queue.getJobs(list(JOB_STATES))
    return jobs


# -- accepted, item by item ---------------------------------------------------------------


async def test_a_mixed_batch_answers_each_email_in_order_and_stores_only_the_valid_ones(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    emails: list[Any] = [
        _with(subject="First"),
        _with(to="not-an-address"),
        _with(
            to=["carl@example.com", "Dee <dee@example.com>"], subject="Third", cc="c@example.com"
        ),
        {"to": "ok@example.com", "cc": ["also-bad"], "subject": "", "text": "t"},
        42,
        _with(**{"from": "Acme <no-reply@acme.example.org>"}, subject="Sixth"),
    ]
    before = datetime.now(UTC)
    response = await _batch(client, emails, headers={"X-Request-ID": "req-batch-1"})
    after = datetime.now(UTC)

    body = _accepted(response)
    assert response.headers["x-request-id"] == "req-batch-1"
    assert (body["accepted"], body["rejected"]) == (3, 3)
    data = body["data"]
    assert ["id" in item for item in data] == [True, False, True, False, False, True]
    assert _item_fields(data[1]) == ["emails[1].to[0]"]
    assert sorted(_item_fields(data[3])) == ["emails[3].cc[0]", "emails[3].subject"]
    assert _item_fields(data[4]) == ["emails[4]"]
    assert data[5]["messageId"].endswith("@acme.example.org>")
    assert data[0]["messageId"].endswith("@example.com>")

    stored = await _stored(sessions)
    assert set(stored) == set(_ids(body))
    subjects = {0: "First", 2: "Third", 5: "Sixth"}
    for item in data:
        if "id" not in item:
            continue
        row = stored[uuid.UUID(item["id"])]
        assert row.subject == subjects[item["index"]]
        assert row.message_id == item["messageId"]
        created_at = datetime.fromisoformat(item["createdAt"])
        assert row.created_at == created_at
        assert before <= created_at <= after
        assert (row.status, row.attempts) == ("queued", 0)
        assert row.request_id == "req-batch-1"
        assert row.next_attempt_at is not None
    third = stored[uuid.UUID(data[2]["id"])]
    assert third.to_addrs == ["carl@example.com", "Dee <dee@example.com>"]
    assert third.cc_addrs == ["c@example.com"]
    assert third.recipients == ["c@example.com", "carl@example.com", "dee@example.com"]
    assert stored[uuid.UUID(data[5]["id"])].sender == "Acme <no-reply@acme.example.org>"
    assert stored[uuid.UUID(data[0]["id"])].sender == "Mailroom Tests <sender@example.com>"


async def test_each_accepted_email_reads_back_as_sent_in_the_batch(
    client: httpx.AsyncClient,
) -> None:
    body = _accepted(await _batch(client, [_with(subject="One"), _with(bcc="b@example.com")]))
    for item, subject in zip(body["data"], ["One", "Hello"], strict=True):
        detail = (await client.get(f"/emails/{item['id']}")).json()
        assert detail["subject"] == subject
        assert detail["messageId"] == item["messageId"]
        assert detail["createdAt"] == item["createdAt"]
        assert detail["status"] == "queued"
        assert detail["deliveryAttempts"] == []


@pytest.mark.parametrize(
    ("item", "fields"),
    [
        pytest.param(_without("to"), ["to"], id="to-missing"),
        pytest.param(_with(to=["ok@example.com", "bad"]), ["to[1]"], id="to-second-invalid"),
        pytest.param(_with(bcc=["bad"]), ["bcc[0]"], id="bcc-invalid"),
        pytest.param(_with(**{"from": "bad"}), ["from"], id="from-invalid"),
        pytest.param(_with(replyTo="bad"), ["replyTo[0]"], id="reply-to-invalid"),
        pytest.param(_with(subject="Hi\r\nBcc: e@example.com"), ["subject"], id="subject-crlf"),
        pytest.param(_with(headers={"X-Count": 5}), ["headers.X-Count"], id="header-number"),
        pytest.param(_with(headers={"Bcc": "e@example.com"}), ["headers"], id="header-reserved"),
        pytest.param(_with(attachment=[]), ["attachment"], id="unknown-field"),
        # Errors about the email as a whole name the email itself.
        pytest.param(_without("text"), [""], id="no-body"),
        pytest.param(_with(to=[f"r{n}@example.com" for n in range(51)]), [""], id="51-recipients"),
        pytest.param(None, [""], id="null"),
        pytest.param("jane@example.com", [""], id="string"),
        pytest.param([VALID], [""], id="list"),
        pytest.param(7, [""], id="number"),
    ],
)
async def test_an_invalid_email_is_rejected_alone_naming_its_index_and_field(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    item: Any,
    fields: list[str],
) -> None:
    body = _accepted(await _batch(client, [VALID, VALID, item, VALID]))
    assert (body["accepted"], body["rejected"]) == (3, 1)
    rejected = body["data"][2]
    assert set(rejected) == REJECTED_KEYS
    expected = [f"emails[2].{f}" if f else "emails[2]" for f in fields]
    assert _item_fields(rejected) == expected
    # The item's message starts from its first problem, like a single send's error.
    assert expected[0] in rejected["error"]["message"]
    assert set(await _stored(sessions)) == set(_ids(body))


async def test_identical_emails_in_one_batch_are_separate_emails(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = _accepted(await _batch(client, [VALID] * 5))
    ids = _ids(body)
    assert len(set(ids)) == 5
    assert len({item["messageId"] for item in body["data"]}) == 5
    assert set(await _stored(sessions)) == set(ids)


async def test_500_emails_are_accepted_and_queued_in_jobs_of_50(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
) -> None:
    assert settings.batch_job_size == 50  # the default
    body = _accepted(await _batch(client, batch_items(500)))
    assert (body["accepted"], body["rejected"]) == (500, 0)
    ids = _ids(body)
    assert len(set(ids)) == 500
    assert len({item["messageId"] for item in body["data"]}) == 500
    stored = await _stored(sessions)
    assert set(stored) == set(ids)
    assert all(stored[i].subject == f"batch {n}" for n, i in enumerate(ids))

    jobs = await _queued_jobs(dispatcher)
    assert len(jobs) == 10
    assert {job.name for job in jobs} == {BATCH_JOB_NAME}
    assert sorted(len(job.data["emailIds"]) for job in jobs) == [50] * 10
    queued = [i for job in jobs for i in job.data["emailIds"]]
    assert sorted(queued) == sorted(str(i) for i in ids)


async def test_501_emails_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher
) -> None:
    response = await _batch(client, batch_items(501))
    assert _fields(response) == ["emails"]
    assert await _stored(sessions) == {}
    assert await _queued_jobs(dispatcher) == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"emails": []}, ["emails"], id="empty-list"),
        pytest.param({}, ["emails"], id="emails-missing"),
        pytest.param({"emails": None}, ["emails"], id="emails-null"),
        pytest.param({"emails": VALID}, ["emails"], id="emails-an-object"),
        pytest.param({"emails": "jane@example.com"}, ["emails"], id="emails-a-string"),
        pytest.param({"emails": [VALID], "dryRun": True}, ["dryRun"], id="extra-top-level-field"),
        pytest.param([VALID], ["body"], id="json-array"),
        pytest.param(None, ["body"], id="json-null"),
        pytest.param(42, ["body"], id="json-number"),
    ],
)
async def test_what_is_not_a_batch_is_422_and_stores_nothing(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    body: Any,
    fields: list[str],
) -> None:
    response = await client.post("/send/batch", json=body)
    assert _fields(response) == fields
    assert await _stored(sessions) == {}
    assert await _queued_jobs(dispatcher) == []


async def test_a_single_email_posted_as_a_batch_is_422(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/send/batch", json=VALID)
    assert "emails" in _fields(response)
    assert await _stored(sessions) == {}


async def test_malformed_json_is_400(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post(
        "/send/batch",
        content=b'{"emails": [{"to": "jane@example.com",}]}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_request")
    assert await _stored(sessions) == {}


# -- nothing valid --------------------------------------------------------------------------


async def test_a_batch_without_one_valid_email_is_422_listing_every_problem(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher
) -> None:
    response = await _batch(
        client,
        [
            _with(to="bad"),
            {"to": "also-bad", "subject": "", "text": "t"},
            "not an email",
            _without("text"),
        ],
    )
    fields = _fields(response)
    assert fields[0] == "emails[0].to[0]"
    assert sorted(fields[1:3]) == ["emails[1].subject", "emails[1].to[0]"]
    assert fields[3:] == ["emails[2]", "emails[3]"]
    message = response.json()["error"]["message"]
    assert "emails[0].to[0]" in message
    assert await _stored(sessions) == {}
    assert await _queued_jobs(dispatcher) == []


# -- who may send -----------------------------------------------------------------------------


async def test_without_a_key_it_is_401_and_nothing_is_stored(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert_error(await _batch(anonymous, [VALID]), 401, "unauthorized")
    unknown = await _batch(
        anonymous, [VALID], headers={"Authorization": "Bearer mr_unknownunknownunknown"}
    )
    assert_error(unknown, 401, "unauthorized")
    assert await _stored(sessions) == {}


async def test_the_key_is_checked_before_the_body_is_read(anonymous: httpx.AsyncClient) -> None:
    # Not JSON at all: without a key the answer is still 401, not 400.
    response = await anonymous.post(
        "/send/batch", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 401, "unauthorized")


async def test_a_key_without_the_send_scope_is_403(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions, (Scope.LOGS_READ,))
    async with api_client(settings, key=key) as reader:
        forbidden = await _batch(reader, [VALID])
        malformed = await reader.post(
            "/send/batch", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert_error(forbidden, 403, "forbidden")
    assert_error(malformed, 403, "forbidden")
    assert await _stored(sessions) == {}


async def test_a_batch_counts_once_against_the_rate_limit(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions, rate_limit="3/minute")
    async with api_client(settings, key=key) as client:
        first = await _batch(client, batch_items(20, prefix="one"))
        second = await client.post("/send", json=VALID)
        third = await _batch(client, batch_items(20, prefix="three"))
        refused = await _batch(client, batch_items(20, prefix="four"))

    assert _accepted(first)["accepted"] == 20
    assert second.status_code == 202, second.text
    assert _accepted(third)["accepted"] == 20
    # One hit per request, however many emails it carries, shared with POST /send.
    assert [r.headers["RateLimit-Remaining"] for r in (first, second, third)] == ["2", "1", "0"]
    assert first.headers["RateLimit-Limit"] == "3"
    error = assert_error(refused, 429, "rate_limited")
    assert error["details"] == {"retryAfter": int(refused.headers["Retry-After"])}
    assert len(await _stored(sessions)) == 41


async def test_a_batch_refused_as_a_whole_still_counts_once(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions, rate_limit="2/minute")
    async with api_client(settings, key=key) as client:
        invalid = await _batch(client, [_with(to="bad")] * 30)
        accepted = await _batch(client, [VALID])
    assert invalid.status_code == 422
    assert invalid.headers["RateLimit-Remaining"] == "1"
    assert accepted.headers["RateLimit-Remaining"] == "0"


# -- Idempotency-Key ---------------------------------------------------------------------------


def _new_key() -> str:
    return f"batch-{secrets.token_hex(8)}"


MIXED: list[Any] = [_with(subject="A"), _with(to="bad"), _with(subject="C")]


async def test_the_same_key_and_batch_replay_the_first_response(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher
) -> None:
    key = _new_key()
    first = await _batch(client, MIXED, key=key)
    original = _accepted(first)
    jobs_before = len(await _queued_jobs(dispatcher))
    second = await _batch(client, MIXED, key=key)

    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    # The very same answer, errors included and no null fields.
    assert second.json() == first.json()
    assert _accepted(second) == original
    assert len(await _stored(sessions)) == 2
    assert jobs_before == 1
    assert len(await _queued_jobs(dispatcher)) == 1


async def test_a_replay_ignores_the_order_of_fields(client: httpx.AsyncClient) -> None:
    key = _new_key()
    original = _accepted(await _batch(client, MIXED, key=key))
    reordered = [dict(reversed(list(item.items()))) for item in MIXED]
    replay = await client.post(
        "/send/batch",
        json={"emails": reordered},
        headers={"Idempotency-Key": key},
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert _accepted(replay) == original


async def test_the_same_key_with_another_batch_is_refused(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = _new_key()
    original = _accepted(await _batch(client, MIXED, key=key))
    for other in ([*MIXED, VALID], MIXED[:2], [_with(subject="Z"), *MIXED[1:]], [MIXED[0]]):
        response = await _batch(client, other, key=key)
        error = assert_error(response, 422, "idempotency_key_reused")
        assert [d["field"] for d in error["details"]] == ["Idempotency-Key"]
        assert "Idempotent-Replayed" not in response.headers
    assert len(await _stored(sessions)) == 2
    # The original still replays.
    assert _accepted(await _batch(client, MIXED, key=key)) == original


async def test_a_key_used_for_one_send_is_not_reusable_for_a_batch(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = _new_key()
    single = await client.post("/send", json=VALID, headers={"Idempotency-Key": key})
    assert single.status_code == 202, single.text
    response = await _batch(client, [VALID], key=key)
    assert_error(response, 422, "idempotency_key_reused")
    assert len(await _stored(sessions)) == 1


async def test_a_batch_refused_as_a_whole_does_not_claim_the_key(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = _new_key()
    assert (await _batch(client, [_with(to="bad")], key=key)).status_code == 422
    response = await _batch(client, [VALID], key=key)
    assert _accepted(response)["accepted"] == 1
    assert "Idempotent-Replayed" not in response.headers
    assert len(await _stored(sessions)) == 1


async def test_concurrent_batches_with_one_key_store_the_emails_once(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher
) -> None:
    key = _new_key()
    emails = batch_items(30)
    responses = await asyncio.gather(*(_batch(client, emails, key=key) for _ in range(8)))
    bodies = [_accepted(r) for r in responses]
    assert all(body == bodies[0] for body in bodies)
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count(None) == 1 and replayed.count("true") == 7
    assert set(await _stored(sessions)) == set(_ids(bodies[0]))
    assert len(await _queued_jobs(dispatcher)) == 1


# -- body size -----------------------------------------------------------------------------------


@pytest.fixture
def small_limits(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(max_body_bytes=2048, max_batch_body_bytes=8192)


def _padded(size: int) -> list[dict[str, Any]]:
    """Two emails whose JSON batch body is about ``size`` bytes."""
    return [_with(text="x" * (size // 2 - 100)), _with(text="y" * (size // 2 - 100))]


async def test_the_batch_body_limit_replaces_the_send_limit_on_this_path(
    small_limits: Settings, api_key: str, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    emails = _padded(5000)
    async with api_client(small_limits, key=api_key) as client:
        single = await client.post("/send", json=_with(text="x" * 5000))
        batch = await _batch(client, emails)
    # Over MAX_BODY_BYTES, under MAX_BATCH_BODY_BYTES: too large for /send, fine for a batch.
    assert_error(single, 413, "payload_too_large")
    assert int(batch.request.headers["content-length"]) > small_limits.max_body_bytes
    assert _accepted(batch)["accepted"] == 2
    assert len(await _stored(sessions)) == 2


async def test_a_batch_over_max_batch_body_bytes_is_413_and_stores_nothing(
    small_limits: Settings, api_key: str, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    async with api_client(small_limits, key=api_key) as client:
        response = await _batch(client, _padded(9000))
        assert int(response.request.headers["content-length"]) > small_limits.max_batch_body_bytes
        error = assert_error(response, 413, "payload_too_large")
        assert "8192" in error["message"]

        # The same without a Content-Length: the body is counted as it arrives.
        payload = httpx.Request("POST", "/", json={"emails": _padded(9000)}).content

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 1000):
                yield payload[start : start + 1000]

        streamed = await client.post(
            "/send/batch", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert_error(streamed, 413, "payload_too_large")
    assert await _stored(sessions) == {}


async def test_a_batch_just_under_the_limit_is_accepted(
    small_limits: Settings, api_key: str, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    emails = _padded(8000)
    size = len(httpx.Request("POST", "/", json={"emails": emails}).content)
    assert 7800 < size <= small_limits.max_batch_body_bytes
    async with api_client(small_limits, key=api_key) as client:
        assert _accepted(await _batch(client, emails))["accepted"] == 2


# -- the queue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("valid", "size"), [(7, 3), (6, 3), (1, 3), (5, 1), (120, 50)])
async def test_accepted_emails_are_queued_in_jobs_of_batch_job_size(
    settings_factory: Callable[..., Settings],
    api_key: str,
    dispatcher: Dispatcher,
    clean: None,
    valid: int,
    size: int,
) -> None:
    emails: list[Any] = batch_items(valid)
    emails.insert(min(2, valid), _with(to="bad"))  # a rejected one does not take a slot
    async with api_client(settings_factory(batch_job_size=size), key=api_key) as client:
        response = await _batch(client, emails, headers={"X-Request-ID": "req-jobs"})
    body = _accepted(response)
    ids = [str(i) for i in _ids(body)]
    assert len(ids) == valid

    jobs = await _queued_jobs(dispatcher)
    assert len(jobs) == math.ceil(valid / size)
    assert {job.name for job in jobs} == {BATCH_JOB_NAME}
    assert len({job.id for job in jobs}) == len(jobs)
    chunks = sorted((job.data["emailIds"] for job in jobs), key=lambda c: ids.index(c[0]))
    # Consecutive runs of the accepted emails, in request order, each at most `size`.
    assert chunks == [ids[start : start + size] for start in range(0, valid, size)]
    assert all(job.data["requestId"] == "req-jobs" for job in jobs)
    assert all(job.opts.get("delay", 0) == 0 for job in jobs)


async def test_no_single_delivery_jobs_are_queued_for_a_batch(
    client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    body = _accepted(await _batch(client, batch_items(3)))
    for email_id in _ids(body):
        assert await dispatcher.queue.getJob(f"{email_id}-1") is None


# -- the log -------------------------------------------------------------------------------------


async def test_the_log_and_the_daily_summary_count_the_accepted_emails(
    client: httpx.AsyncClient,
) -> None:
    emails: list[Any] = [*batch_items(4), _with(to="bad"), None]
    body = _accepted(await _batch(client, emails))
    ids = {str(i) for i in _ids(body)}

    log = (await client.get("/logs/email", params={"limit": 100})).json()
    assert {item["id"] for item in log["data"]} == ids
    assert all(item["status"] == "queued" for item in log["data"])
    assert log["pagination"]["total"] == 4
    assert {k: log["summary"][k] for k in ("total", "sent", "failed", "pending")} == {
        "total": 4,
        "sent": 0,
        "failed": 0,
        "pending": 4,
    }
    for params in ({"tz": "Asia/Kathmandu"}, {"status": "queued"}, {"to": "batch2@example.com"}):
        page = (await client.get("/logs/email", params=params)).json()
        expected = 1 if "to" in params else 4
        assert page["pagination"]["total"] == expected, params
        assert page["summary"]["total"] == 4, params
        assert page["summary"]["pending"] == 4, params


# -- the document ----------------------------------------------------------------------------------


async def test_the_batch_operation_is_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/send/batch"]["post"]
    assert {"202", "400", "401", "403", "413", "422", "429", "503"} <= set(operation["responses"])
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["emails"]
    assert schema.get("additionalProperties") is False
    emails = schema["properties"]["emails"]
    assert (emails["minItems"], emails["maxItems"]) == (1, 500)
    assert emails["items"] == {"$ref": "#/components/schemas/SendEmailRequest"}
    example = schema["examples"][0]
    assert _accepted(await client.post("/send/batch", json=example))["accepted"] == len(
        example["emails"]
    )
