"""GET /logs/email through the real app: shape, order, paging, filters, validation, summary."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.models import Email
from tests.api.shapes import ITEM_KEYS

PAGINATION_KEYS = {"page", "limit", "total", "totalPages", "hasMore", "nextCursor"}
SUMMARY_KEYS = {
    "date",
    "timezone",
    "total",
    "sent",
    "failed",
    "cancelled",
    "bounced",
    "complained",
    "suppressed",
    "pending",
}


async def _send(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi"}
    body.update(fields)
    response = await client.post("/send", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def _send_many(client: httpx.AsyncClient, count: int) -> list[str]:
    """Ids in creation order (oldest first)."""
    return [(await _send(client, subject=f"Email {n}"))["id"] for n in range(count)]


async def _log(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/logs/email", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["data"]]


def _cursor(payload: Any) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "validation_error"
    details = body["error"]["details"]
    assert isinstance(details, list) and details
    return [item["field"] for item in details]


async def _set_status(
    sessions: async_sessionmaker[AsyncSession], ids: list[str], status: str
) -> None:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"status": status, "attempts": 1, "next_attempt_at": None}
    if status == "sent":
        values["sent_at"] = now
    if status == "failed":
        values["failed_at"] = now
    async with sessions() as session, session.begin():
        await session.execute(
            update(Email).where(Email.id.in_([uuid.UUID(i) for i in ids])).values(**values)
        )


async def _age(sessions: async_sessionmaker[AsyncSession], ids: list[str], by: timedelta) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Email)
            .where(Email.id.in_([uuid.UUID(i) for i in ids]))
            .values(created_at=Email.created_at - by, updated_at=Email.updated_at - by)
        )


# -- shape and order ---------------------------------------------------------------------


async def test_the_response_shape_and_defaults(client: httpx.AsyncClient) -> None:
    accepted = await _send(client, cc="carl@example.com", bcc=["hidden@example.com"])
    page = await _log(client)

    assert set(page) == {"data", "pagination", "summary"}
    assert set(page["pagination"]) == PAGINATION_KEYS
    assert set(page["summary"]) == SUMMARY_KEYS
    [item] = page["data"]
    assert set(item) == ITEM_KEYS
    assert item == {
        **item,
        "id": accepted["id"],
        "from": "Mailroom Tests <sender@example.com>",
        "to": ["jane@example.com"],
        "cc": ["carl@example.com"],
        "bcc": ["hidden@example.com"],
        "subject": "Hello",
        "status": "queued",
        "attempts": 0,
        "messageId": accepted["messageId"],
        "createdAt": accepted["createdAt"],
        "sentAt": None,
        "failedAt": None,
        "error": None,
    }
    assert page["pagination"] == {
        "page": 1,
        "limit": 20,
        "total": 1,
        "totalPages": 1,
        "hasMore": False,
        "nextCursor": None,
    }


async def test_an_empty_log(client: httpx.AsyncClient) -> None:
    page = await _log(client)
    assert page["data"] == []
    assert page["pagination"] == {
        "page": 1,
        "limit": 20,
        "total": 0,
        "totalPages": 0,
        "hasMore": False,
        "nextCursor": None,
    }
    assert page["summary"] == {
        **page["summary"],
        "total": 0,
        "sent": 0,
        "failed": 0,
        "pending": 0,
    }


async def test_newest_first(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 4)
    page = await _log(client)
    assert _ids(page) == ids[::-1]
    created = [item["createdAt"] for item in page["data"]]
    assert created == sorted(created, reverse=True)


async def test_default_limit_is_20(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 25)
    page = await _log(client)
    assert _ids(page) == ids[::-1][:20]
    assert page["pagination"] == {
        **page["pagination"],
        "page": 1,
        "limit": 20,
        "total": 25,
        "totalPages": 2,
        "hasMore": True,
    }
    assert isinstance(page["pagination"]["nextCursor"], str)


async def test_limit_100_is_the_maximum_and_is_allowed(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 25)
    page = await _log(client, limit=100)
    assert _ids(page) == ids[::-1]
    assert page["pagination"] == {
        "page": 1,
        "limit": 100,
        "total": 25,
        "totalPages": 1,
        "hasMore": False,
        "nextCursor": None,
    }


# -- paging ------------------------------------------------------------------------------


async def test_page_paging_visits_every_email_once(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 25)

    seen: list[str] = []
    for number, size, more in [(1, 10, True), (2, 10, True), (3, 5, False)]:
        page = await _log(client, page=number, limit=10)
        assert len(page["data"]) == size
        pagination = page["pagination"]
        assert pagination["page"] == number
        assert pagination["limit"] == 10
        assert pagination["total"] == 25
        assert pagination["totalPages"] == 3
        assert pagination["hasMore"] is more
        assert (pagination["nextCursor"] is not None) is more
        seen += _ids(page)

    assert seen == ids[::-1]
    assert len(set(seen)) == 25

    beyond = await _log(client, page=4, limit=10)
    assert beyond["data"] == []
    assert beyond["pagination"]["hasMore"] is False
    assert beyond["pagination"]["total"] == 25


async def test_an_exact_multiple_of_the_limit_has_no_phantom_page(
    client: httpx.AsyncClient,
) -> None:
    ids = await _send_many(client, 20)
    last = await _log(client, page=2, limit=10)
    assert _ids(last) == ids[::-1][10:]
    assert last["pagination"]["totalPages"] == 2
    assert last["pagination"]["hasMore"] is False
    assert last["pagination"]["nextCursor"] is None


async def test_cursor_paging_visits_every_email_once(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 25)

    first = await _log(client, limit=10)
    assert first["pagination"]["page"] == 1
    seen = _ids(first)
    cursor = first["pagination"]["nextCursor"]
    pages = 1
    while cursor is not None:
        page = await _log(client, limit=10, cursor=cursor)
        pages += 1
        pagination = page["pagination"]
        assert pagination["page"] is None
        assert pagination["limit"] == 10
        assert pagination["total"] == 25
        assert pagination["totalPages"] == 3
        assert pagination["hasMore"] is (pagination["nextCursor"] is not None)
        seen += _ids(page)
        cursor = pagination["nextCursor"]
        assert pages <= 3, "the cursor never ran out"

    assert pages == 3
    assert seen == ids[::-1]
    assert len(set(seen)) == 25


async def test_cursor_pages_are_not_shifted_by_new_emails(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 15)
    first = await _log(client, limit=10)
    newer = await _send(client, subject="arrived meanwhile")

    rest = await _log(client, limit=10, cursor=first["pagination"]["nextCursor"])
    assert _ids(first) + _ids(rest) == ids[::-1]
    assert newer["id"] not in _ids(rest)
    assert rest["pagination"]["hasMore"] is False
    assert rest["pagination"]["total"] == 16


async def test_a_cursor_keeps_the_filter(client: httpx.AsyncClient) -> None:
    mine = [(await _send(client, to="mine@example.com"))["id"] for _ in range(5)]
    await _send_many(client, 5)
    first = await _log(client, limit=2, to="mine@example.com")
    seen = _ids(first)
    cursor = first["pagination"]["nextCursor"]
    while cursor is not None:
        page = await _log(client, limit=2, to="mine@example.com", cursor=cursor)
        seen += _ids(page)
        cursor = page["pagination"]["nextCursor"]
        assert len(seen) <= 5
    assert seen == mine[::-1]


# -- filters -----------------------------------------------------------------------------


async def test_status_filter_takes_a_comma_list(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _send_many(client, 6)
    sent, failed, queued = ids[0:2], ids[2:3], ids[3:]
    await _set_status(sessions, sent, "sent")
    await _set_status(sessions, failed, "failed")

    only_sent = await _log(client, status="sent")
    assert _ids(only_sent) == sent[::-1]
    assert only_sent["pagination"]["total"] == 2
    assert {item["status"] for item in only_sent["data"]} == {"sent"}
    assert all(item["sentAt"] is not None for item in only_sent["data"])

    finished = await _log(client, status="sent,failed")
    assert _ids(finished) == (sent + failed)[::-1]
    assert finished["pagination"]["total"] == 3

    spaced = await _log(client, status=" queued , failed ")
    assert _ids(spaced) == (failed + queued)[::-1]

    assert _ids(await _log(client, status="retrying")) == []
    assert _ids(await _log(client, status="queued,sending,retrying,sent,failed")) == ids[::-1]


async def test_to_filter_matches_any_recipient_case_insensitively(
    client: httpx.AsyncClient,
) -> None:
    as_to = (await _send(client, to="Jane Doe <jane@example.com>"))["id"]
    as_cc = (await _send(client, to="x@example.com", cc="JANE@EXAMPLE.COM"))["id"]
    as_bcc = (await _send(client, to="y@example.com", bcc=["z@example.com", "Jane@Example.com"]))[
        "id"
    ]
    other = (await _send(client, to="janet@example.com"))["id"]

    for query in ["jane@example.com", "JANE@example.COM", "Jane Doe <jane@example.com>"]:
        page = await _log(client, to=query)
        assert _ids(page) == [as_bcc, as_cc, as_to], query
        assert page["pagination"]["total"] == 3

    assert _ids(await _log(client, to="janet@example.com")) == [other]
    assert _ids(await _log(client, to="nobody@example.com")) == []


async def test_to_filter_does_not_match_the_sender_or_reply_to(
    client: httpx.AsyncClient,
) -> None:
    await _send(client, **{"from": "boss@example.com", "replyTo": "desk@example.com"})
    assert _ids(await _log(client, to="boss@example.com")) == []
    assert _ids(await _log(client, to="desk@example.com")) == []


async def test_filters_combine(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    jane_sent = (await _send(client, to="jane@example.com"))["id"]
    jane_queued = (await _send(client, to="jane@example.com"))["id"]
    carl_sent = (await _send(client, to="carl@example.com"))["id"]
    await _set_status(sessions, [jane_sent, carl_sent], "sent")

    page = await _log(client, to="jane@example.com", status="sent")
    assert _ids(page) == [jane_sent]
    assert page["pagination"]["total"] == 1
    assert _ids(await _log(client, to="jane@example.com", status="queued")) == [jane_queued]


async def test_since_is_inclusive_and_until_exclusive(client: httpx.AsyncClient) -> None:
    oldest, middle, newest = [await _send(client) for _ in range(3)]

    since = await _log(client, since=middle["createdAt"])
    assert _ids(since) == [newest["id"], middle["id"]]
    assert since["pagination"]["total"] == 2

    until = await _log(client, until=middle["createdAt"])
    assert _ids(until) == [oldest["id"]]
    assert until["pagination"]["total"] == 1

    between = await _log(client, since=oldest["createdAt"], until=newest["createdAt"])
    assert _ids(between) == [middle["id"], oldest["id"]]


async def test_since_with_an_offset_other_than_utc(client: httpx.AsyncClient) -> None:
    older, newer = [await _send(client) for _ in range(2)]
    kolkata = datetime.fromisoformat(newer["createdAt"]).astimezone(ZoneInfo("Asia/Kolkata"))
    page = await _log(client, since=kolkata.isoformat())
    assert _ids(page) == [newer["id"]]
    assert older["id"] not in _ids(page)


async def test_a_naive_since_is_read_in_tz(client: httpx.AsyncClient) -> None:
    older, newer = [await _send(client) for _ in range(2)]
    zone = ZoneInfo("America/New_York")
    local = datetime.fromisoformat(newer["createdAt"]).astimezone(zone).replace(tzinfo=None)

    in_zone = await _log(client, since=local.isoformat(), tz="America/New_York")
    assert _ids(in_zone) == [newer["id"]]
    # The same wall-clock time read as UTC is hours away: it finds both or neither.
    as_utc = await _log(client, since=local.isoformat())
    assert _ids(as_utc) in ([], [newer["id"], older["id"]])
    assert _ids(as_utc) != [newer["id"]]


async def test_since_and_until_exclude_emails_outside(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    old = (await _send(client))["id"]
    recent = (await _send(client))["id"]
    await _age(sessions, [old], timedelta(days=3))
    cutoff = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    assert _ids(await _log(client, since=cutoff)) == [recent]
    assert _ids(await _log(client, until=cutoff)) == [old]


async def test_a_cursor_from_the_future_starts_at_the_newest(client: httpx.AsyncClient) -> None:
    ids = await _send_many(client, 3)
    cursor = _cursor({"v": 1, "t": "2999-01-01T00:00:00+00:00", "i": str(uuid.uuid4())})
    page = await _log(client, cursor=cursor)
    assert _ids(page) == ids[::-1]
    assert page["pagination"]["page"] is None


# -- invalid queries ---------------------------------------------------------------------

_ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"status": "bogus"}, "status", id="status-bogus"),
        pytest.param({"status": "sent,bogus"}, "status", id="status-one-bogus"),
        pytest.param({"status": ""}, "status", id="status-empty"),
        pytest.param({"status": "sent,"}, "status", id="status-trailing-comma"),
        pytest.param({"status": "SENT"}, "status", id="status-upper-case"),
        pytest.param({"page": "0"}, "page", id="page-0"),
        pytest.param({"page": "-1"}, "page", id="page-negative"),
        pytest.param({"page": "abc"}, "page", id="page-text"),
        pytest.param({"page": "1000001"}, "page", id="page-huge"),
        pytest.param({"limit": "0"}, "limit", id="limit-0"),
        pytest.param({"limit": "101"}, "limit", id="limit-101"),
        pytest.param({"limit": "1000"}, "limit", id="limit-1000"),
        pytest.param({"limit": "1.5"}, "limit", id="limit-fraction"),
        pytest.param({"tz": "Mars/Base"}, "tz", id="tz-unknown"),
        pytest.param({"tz": ""}, "tz", id="tz-empty"),
        pytest.param({"tz": "../../etc/passwd"}, "tz", id="tz-path-traversal"),
        pytest.param({"tz": "/etc/localtime"}, "tz", id="tz-absolute-path"),
        pytest.param({"tz": "Europe"}, "tz", id="tz-a-directory"),
        pytest.param({"tz": "A" * 300}, "tz", id="tz-300-chars"),
        pytest.param({"since": "notadate"}, "since", id="since-not-a-date"),
        pytest.param({"until": "notadate"}, "until", id="until-not-a-date"),
        pytest.param({"since": "2026-13-45T00:00:00Z"}, "since", id="since-impossible-date"),
        pytest.param({"since": "0001-01-01T00:00:00+14:00"}, "since", id="since-before-year-1"),
        pytest.param({"until": "9999-12-31T23:59:59-12:00"}, "until", id="until-after-9999"),
        pytest.param({"to": "nope"}, "to", id="to-not-an-address"),
        pytest.param({"to": "a\x00@example.com"}, "to", id="to-nul"),
        pytest.param({"cursor": "abc"}, "cursor", id="cursor-abc"),
        pytest.param({"cursor": "!!!"}, "cursor", id="cursor-not-base64"),
        pytest.param(
            {"cursor": _cursor({"v": 2, "t": "2026-01-01T00:00:00+00:00", "i": _ZERO})},
            "cursor",
            id="cursor-wrong-version",
        ),
        pytest.param(
            {"cursor": _cursor({"t": "2026-01-01T00:00:00+00:00", "i": _ZERO})},
            "cursor",
            id="cursor-no-version",
        ),
        pytest.param({"cursor": _cursor([1, 2])}, "cursor", id="cursor-a-list"),
        pytest.param(
            {"cursor": _cursor({"v": 1, "t": "2026-01-01T00:00:00", "i": _ZERO})},
            "cursor",
            id="cursor-naive-time",
        ),
        pytest.param(
            {"cursor": _cursor({"v": 1, "t": "yesterday", "i": _ZERO})},
            "cursor",
            id="cursor-bad-time",
        ),
        pytest.param(
            {"cursor": _cursor({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": "x"})},
            "cursor",
            id="cursor-bad-id",
        ),
        pytest.param(
            {"cursor": _cursor({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": 5})},
            "cursor",
            id="cursor-numeric-id",
        ),
        pytest.param(
            {"cursor": _cursor({"v": 1, "t": "0001-01-01T00:00:00+14:00", "i": _ZERO})},
            "cursor",
            id="cursor-time-before-year-1",
        ),
        pytest.param({"foo": "1"}, "foo", id="unknown-parameter"),
    ],
)
async def test_an_invalid_query_is_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/logs/email", params=params)
    assert _fields(response) == [field]


async def test_page_together_with_cursor_is_422_naming_them(client: httpx.AsyncClient) -> None:
    cursor = _cursor({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": _ZERO})
    response = await client.get("/logs/email", params={"page": "2", "cursor": cursor})
    [field] = _fields(response)
    assert field in ("page", "cursor")


async def test_since_not_before_until_is_422_naming_them(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/logs/email",
        params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    [field] = _fields(response)
    assert field in ("since", "until")


# -- the daily summary -------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz", ["UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
)
async def test_the_summary_counts_todays_emails_as_pending(
    client: httpx.AsyncClient, tz: str
) -> None:
    await _send_many(client, 3)
    before = datetime.now(ZoneInfo(tz)).date().isoformat()
    page = await _log(client, tz=tz)
    after = datetime.now(ZoneInfo(tz)).date().isoformat()

    summary = page["summary"]
    assert summary["date"] in (before, after)
    assert summary == {
        "date": summary["date"],
        "timezone": tz,
        "total": 3,
        "sent": 0,
        "failed": 0,
        "cancelled": 0,
        "bounced": 0,
        "complained": 0,
        "suppressed": 0,
        "pending": 3,
    }


async def test_the_summary_defaults_to_utc(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC).date().isoformat()
    page = await _log(client)
    after = datetime.now(UTC).date().isoformat()
    assert page["summary"]["timezone"] == "UTC"
    assert page["summary"]["date"] in (before, after)


async def test_the_summary_counts_sent_and_failed(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _send_many(client, 6)
    await _set_status(sessions, ids[:3], "sent")
    await _set_status(sessions, ids[3:4], "failed")
    summary = (await _log(client))["summary"]
    assert {k: summary[k] for k in ("total", "sent", "failed", "pending")} == {
        "total": 6,
        "sent": 3,
        "failed": 1,
        "pending": 2,
    }


async def test_the_summary_counts_only_today_and_ignores_filters(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _send_many(client, 4)
    await _age(sessions, ids[:2], timedelta(days=3))
    await _set_status(sessions, ids[2:3], "sent")

    page = await _log(client, status="queued", limit=1)
    assert page["pagination"]["total"] == 3
    summary = page["summary"]
    assert {k: summary[k] for k in ("total", "sent", "failed", "pending")} == {
        "total": 2,
        "sent": 1,
        "failed": 0,
        "pending": 1,
    }
