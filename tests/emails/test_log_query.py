"""The log query: its cursor, "today" in a time zone, and parameter validation."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mailroom.emails.log_query import (
    MAX_LIMIT,
    LogQuery,
    day_bounds,
    decode_cursor,
    encode_cursor,
)
from mailroom.emails.log_repository import LogFilter, Position
from mailroom.emails.states import EmailStatus

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
POSITION = Position(
    created_at=datetime(2026, 11, 27, 10, 15, 30, 123456, tzinfo=UTC),
    id=uuid.UUID("0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_of(payload: Any) -> str:
    return b64(json.dumps(payload).encode())


# -- the cursor ---------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor(POSITION)) == POSITION


def test_cursor_is_url_safe_and_unpadded() -> None:
    cursor = encode_cursor(POSITION)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)


def test_cursor_payload_is_versioned() -> None:
    raw = base64.urlsafe_b64decode(encode_cursor(POSITION) + "==")
    assert json.loads(raw) == {
        "v": 1,
        "t": "2026-11-27T10:15:30.123456+00:00",
        "i": "0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    }


def test_cursor_keeps_the_offset() -> None:
    created = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    decoded = decode_cursor(encode_cursor(Position(created, POSITION.id)))
    assert decoded.created_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert decoded.created_at == created


@given(
    created_at=st.datetimes(timezones=st.timezones()),
    email_id=st.uuids(),
)
def test_cursor_round_trips_any_aware_datetime_and_uuid(
    created_at: datetime, email_id: uuid.UUID
) -> None:
    decoded = decode_cursor(encode_cursor(Position(created_at, email_id)))
    assert decoded.id == email_id
    # Same wall time and same offset: the same instant, without depending on how
    # aware datetimes in different zones compare inside a DST fold.
    assert decoded.created_at.isoformat() == created_at.isoformat()
    assert decoded.created_at.replace(tzinfo=None) == created_at.replace(tzinfo=None)
    assert decoded.created_at.utcoffset() == created_at.utcoffset()


@given(
    created_at=st.datetimes(timezones=st.just(UTC)),
    email_id=st.uuids(),
)
def test_cursor_round_trip_is_exact_in_utc(created_at: datetime, email_id: uuid.UUID) -> None:
    assert decode_cursor(encode_cursor(Position(created_at, email_id))) == Position(
        created_at, email_id
    )


def test_decode_accepts_padding() -> None:
    cursor = encode_cursor(POSITION)
    padded = cursor + "=" * (-len(cursor) % 4)
    assert decode_cursor(padded) == POSITION


GOOD_TIME = "2026-11-27T10:15:30+00:00"
GOOD_ID = "0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

BAD_CURSORS = {
    "empty": "",
    "garbage": "this is not a cursor!",
    "bad base64 length": "a",
    "bad base64 padding": "abcde",
    "base64 but not json": b64(b"hello, world"),
    "base64 of invalid utf-8": b64(b"\x80\x81\x82\xff"),
    "json list": cursor_of([1, GOOD_TIME, GOOD_ID]),
    "json string": cursor_of("v1"),
    "json number": cursor_of(1),
    "json null": cursor_of(None),
    "wrong version": cursor_of({"v": 2, "t": GOOD_TIME, "i": GOOD_ID}),
    "version zero": cursor_of({"v": 0, "t": GOOD_TIME, "i": GOOD_ID}),
    "version as string": cursor_of({"v": "1", "t": GOOD_TIME, "i": GOOD_ID}),
    "no version": cursor_of({"t": GOOD_TIME, "i": GOOD_ID}),
    "naive time": cursor_of({"v": 1, "t": "2026-11-27T10:15:30", "i": GOOD_ID}),
    "time not iso": cursor_of({"v": 1, "t": "yesterday", "i": GOOD_ID}),
    "time a number": cursor_of({"v": 1, "t": 1700000000, "i": GOOD_ID}),
    "time missing": cursor_of({"v": 1, "i": GOOD_ID}),
    "id not a uuid": cursor_of({"v": 1, "t": GOOD_TIME, "i": "42"}),
    "id null": cursor_of({"v": 1, "t": GOOD_TIME, "i": None}),
    "id missing": cursor_of({"v": 1, "t": GOOD_TIME}),
    "id a number": cursor_of({"v": 1, "t": GOOD_TIME, "i": 42}),
    "id a list": cursor_of({"v": 1, "t": GOOD_TIME, "i": [GOOD_ID]}),
    "deeply nested json": b64(b"[" * 5000 + b"]" * 5000),
    "cursor with a dot": encode_cursor(POSITION) + ".x",
}


@pytest.mark.parametrize("cursor", list(BAD_CURSORS.values()), ids=list(BAD_CURSORS))
def test_decode_cursor_rejects(cursor: str) -> None:
    with pytest.raises(ValueError, match="is not a valid cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize("cursor", list(BAD_CURSORS.values()), ids=list(BAD_CURSORS))
def test_log_query_rejects_bad_cursor_as_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationError, match="is not a valid cursor"):
        LogQuery(cursor=cursor)


# -- day_bounds ---------------------------------------------------------------------------


def hours(start: datetime, end: datetime) -> float:
    # Subtract instants: subtracting two datetimes in the same zone ignores the offsets.
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


@pytest.mark.parametrize(
    ("day", "zone", "length"),
    [
        (date(2024, 6, 15), ZoneInfo("UTC"), 24),
        (date(2024, 6, 15), BERLIN, 24),
        (date(2024, 3, 31), BERLIN, 23),
        (date(2024, 10, 27), BERLIN, 25),
        (date(2024, 3, 30), BERLIN, 24),
        (date(2024, 10, 28), BERLIN, 24),
        (date(2024, 3, 10), NEW_YORK, 23),
        (date(2024, 11, 3), NEW_YORK, 25),
        (date(2024, 3, 11), NEW_YORK, 24),
        (date(2024, 2, 29), NEW_YORK, 24),
        (date(2024, 12, 31), ZoneInfo("Asia/Kolkata"), 24),
        # Chile changes its clocks at midnight: the day starts at 01:00 or 23:00 happens twice.
        (date(2024, 9, 8), ZoneInfo("America/Santiago"), 23),
        (date(2024, 4, 6), ZoneInfo("America/Santiago"), 25),
    ],
)
def test_day_length(day: date, zone: ZoneInfo, length: int) -> None:
    start, end = day_bounds(day, zone)
    assert hours(start, end) == length


def test_day_bounds_are_local_midnights() -> None:
    start, end = day_bounds(date(2024, 10, 27), BERLIN)
    assert start == datetime(2024, 10, 27, tzinfo=BERLIN)
    assert end == datetime(2024, 10, 28, tzinfo=BERLIN)
    assert start.astimezone(UTC) == datetime(2024, 10, 26, 22, 0, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2024, 10, 27, 23, 0, tzinfo=UTC)


def test_day_bounds_new_york_spring_forward_instants() -> None:
    start, end = day_bounds(date(2024, 3, 10), NEW_YORK)
    assert start.astimezone(UTC) == datetime(2024, 3, 10, 5, 0, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2024, 3, 11, 4, 0, tzinfo=UTC)


def test_consecutive_days_touch() -> None:
    day = date(2024, 1, 1)
    for _ in range(366):
        _, end = day_bounds(day, BERLIN)
        next_start, _ = day_bounds(day + timedelta(days=1), BERLIN)
        assert end.astimezone(UTC) == next_start.astimezone(UTC)
        day += timedelta(days=1)


@given(
    day=st.dates(min_value=date(1971, 1, 1), max_value=date(2100, 12, 31)),
    zone=st.sampled_from([BERLIN, NEW_YORK, ZoneInfo("UTC"), ZoneInfo("Australia/Sydney")]),
)
def test_any_day_is_23_24_or_25_hours(day: date, zone: ZoneInfo) -> None:
    start, end = day_bounds(day, zone)
    assert hours(start, end) in {23, 24, 25}
    assert start.date() == day
    assert end.date() == day + timedelta(days=1)


# -- LogQuery validation ------------------------------------------------------------------


def test_defaults() -> None:
    query = LogQuery()
    assert query.page is None
    assert query.limit == 20
    assert query.status is None
    assert query.to is None
    assert query.tz == "UTC"
    assert query.cursor is None
    assert query.zone == ZoneInfo("UTC")
    assert query.log_filter(None) == LogFilter(project_id=None)
    assert query.position() is None


@pytest.mark.parametrize(
    "params",
    [
        {"status": "delivered"},
        {"status": "sent,returned"},
        {"status": "SENT"},
        {"status": ""},
        {"status": "sent,,failed"},
        {"tz": "Mars/Olympus_Mons"},
        {"tz": "Berlin"},
        {"tz": ""},
        {"tz": "../../etc/passwd"},
        {"tz": "/etc/localtime"},
        {"tz": "Europe"},  # a folder of the zone database, not a zone
        {"tz": "America/"},
        {"page": 0},
        {"page": -1},
        {"page": 1_000_001},
        {"limit": 0},
        {"limit": MAX_LIMIT + 1},
        {"limit": -5},
        {"page": 2, "cursor": encode_cursor(POSITION)},
        {"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
        {"since": "2024-01-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
        {"to": "not an address"},
        {"to": "a@example.com\r\nBcc: x@example.com"},
        {"unknown": "x"},
        {"since": "not a date"},
    ],
)
def test_invalid_queries_raise_validation_error(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LogQuery.model_validate(params)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "delivered"}, "unknown status 'delivered'"),
        ({"tz": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"page": 1, "cursor": encode_cursor(POSITION)}, "give either page or cursor"),
        (
            {"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"},
            "must be later than since",
        ),
    ],
)
def test_validation_messages(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        LogQuery.model_validate(params)


@pytest.mark.parametrize("limit", [1, 20, MAX_LIMIT])
def test_limit_bounds_accepted(limit: int) -> None:
    assert LogQuery(limit=limit).limit == limit


def test_query_string_values_are_coerced() -> None:
    query = LogQuery.model_validate({"page": "3", "limit": "50"})
    assert query.page == 3
    assert query.limit == 50


def test_comma_separated_status_becomes_statuses() -> None:
    query = LogQuery(status="sent, failed ,retrying")
    assert query.status == "sent,failed,retrying"
    assert query.log_filter(None).statuses == (
        EmailStatus.SENT,
        EmailStatus.FAILED,
        EmailStatus.RETRYING,
    )


@pytest.mark.parametrize("status", [s.value for s in EmailStatus])
def test_single_status(status: str) -> None:
    assert LogQuery(status=status).log_filter(None).statuses == (EmailStatus(status),)


def test_to_is_normalised_to_the_bare_lower_case_address() -> None:
    query = LogQuery(to="Jane Doe <Jane.Doe@Example.COM>")
    assert query.to == "jane.doe@example.com"
    assert query.log_filter(None).recipient == "jane.doe@example.com"


def test_cursor_gives_position() -> None:
    query = LogQuery(cursor=encode_cursor(POSITION), limit=5)
    assert query.position() == POSITION
    assert query.page is None


def test_naive_since_and_until_are_read_in_the_query_zone() -> None:
    query = LogQuery.model_validate(
        {"since": "2024-07-01T00:00:00", "until": "2024-07-02T00:00:00", "tz": "Europe/Berlin"}
    )
    log_filter = query.log_filter(None)
    assert log_filter.since is not None and log_filter.until is not None
    assert log_filter.since.astimezone(UTC) == datetime(2024, 6, 30, 22, 0, tzinfo=UTC)
    assert log_filter.until.astimezone(UTC) == datetime(2024, 7, 1, 22, 0, tzinfo=UTC)


def test_naive_since_in_new_york_winter() -> None:
    query = LogQuery(since=datetime(2024, 1, 15, 9, 0), tz="America/New_York")
    assert query.log_filter(None).since == datetime(2024, 1, 15, 14, 0, tzinfo=UTC)


def test_aware_since_and_until_keep_their_own_instant() -> None:
    since = datetime(2024, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=-7)))
    query = LogQuery(since=since, tz="Europe/Berlin")
    filtered_since = query.log_filter(None).since
    assert filtered_since == since  # 08:00 at UTC-7, not 08:00 in Berlin
    assert filtered_since == datetime(2024, 7, 1, 15, 0, tzinfo=UTC)


def test_naive_and_aware_bounds_are_compared_as_instants() -> None:
    # 10:00 in Berlin (summer) is 08:00 UTC, so 08:30 UTC is later: valid.
    valid = LogQuery.model_validate(
        {"since": "2024-07-01T10:00:00", "until": "2024-07-01T08:30:00Z", "tz": "Europe/Berlin"}
    )
    assert valid.log_filter(None).since == datetime(2024, 7, 1, 8, 0, tzinfo=UTC)
    # 07:30 UTC is earlier than 10:00 Berlin time: refused.
    with pytest.raises(ValidationError, match="must be later than since"):
        LogQuery.model_validate(
            {
                "since": "2024-07-01T10:00:00",
                "until": "2024-07-01T07:30:00Z",
                "tz": "Europe/Berlin",
            }
        )


def test_zone_property() -> None:
    assert LogQuery(tz="America/New_York").zone == NEW_YORK


@pytest.mark.parametrize("value", ["0.5", "1700000000", "-1", "+12"])
def test_since_and_until_are_iso_8601_not_unix_times(value: str) -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        LogQuery.model_validate({"since": value})
    with pytest.raises(ValidationError, match="ISO 8601"):
        LogQuery.model_validate({"until": value})
