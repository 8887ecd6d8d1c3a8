"""The query of ``GET /logs/email``: filters, paging, the opaque cursor and "today"."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mailroom.addresses import parse_mailbox
from mailroom.emails.instants import in_utc, iso_8601_only
from mailroom.emails.log_repository import LogFilter, Position
from mailroom.emails.states import EmailStatus
from mailroom.projects.names import MAX_NAME_LENGTH, check_name

MAX_LIMIT = 100
_CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 256  # a real one is about 110 characters


def encode_cursor(position: Position) -> str:
    payload = {"v": _CURSOR_VERSION, "t": position.created_at.isoformat(), "i": str(position.id)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """Raises ValueError for anything that is not a cursor this service produced."""
    invalid = ValueError("is not a valid cursor: pass back a nextCursor unchanged")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise invalid from None
    if not isinstance(payload, dict) or set(payload) != {"v", "t", "i"}:
        raise invalid
    version, created, email_id = payload["v"], payload["t"], payload["i"]
    if type(version) is not int or version != _CURSOR_VERSION:
        raise invalid
    if not isinstance(created, str) or not isinstance(email_id, str):
        raise invalid
    try:
        created_at = datetime.fromisoformat(created)
        position = Position(created_at=created_at, id=uuid.UUID(email_id))
    except ValueError:
        raise invalid from None
    if created_at.tzinfo is None:
        raise invalid
    try:
        created_at.astimezone(UTC)  # PostgreSQL must be able to compare against it
    except OverflowError:
        raise invalid from None
    return position


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in a zone; 23 or 25 hours long on DST changes."""
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start, end


class LogQuery(BaseModel):
    """Query parameters of GET /logs/email."""

    model_config = ConfigDict(extra="forbid")

    page: Annotated[
        int | None,
        Field(ge=1, le=1_000_000, description="1-based page number (default 1)", examples=[1]),
    ] = None
    limit: Annotated[
        int,
        Field(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}", examples=[20]),
    ] = 20
    status: Annotated[
        str | None,
        Field(
            description="Only these statuses, comma-separated "
            "(scheduled, queued, sending, retrying, sent, failed, cancelled)",
            examples=["failed", "queued,retrying"],
        ),
    ] = None
    to: Annotated[
        str | None,
        Field(
            description="Only emails with this recipient (to, cc or bcc)",
            examples=["jane@example.com"],
        ),
    ] = None
    provider: Annotated[
        str | None,
        Field(
            description="Only emails with an attempt through this provider "
            "(an SMTP_PROVIDERS name, or SMTP_HOST)",
            max_length=63,
            examples=["ses"],
        ),
    ] = None
    tz: Annotated[
        str,
        Field(
            description="IANA time zone that fixes 'today' for the summary",
            examples=["UTC", "Europe/Berlin"],
        ),
    ] = "UTC"
    # After tz: a time without an offset is read in that zone.
    since: Annotated[
        datetime | None,
        Field(description="Created at or after (ISO 8601)", examples=["2026-11-01T00:00:00Z"]),
    ] = None
    until: Annotated[
        datetime | None, Field(description="Created before (ISO 8601)", examples=["2026-12-01"])
    ] = None
    cursor: Annotated[
        str | None,
        Field(
            description="nextCursor of a previous page (keyset paging)",
            examples=[
                "eyJ2IjoxLCJ0IjoiMjAyNi0xMS0yN1QxMDowMDowMCswMDowMCIsImkiOiI1YjBjMWMyYS0wYjFk"
                "LTQ1ZjUtOWI4Yy1iYzBkOWIxYTZmNmQifQ"
            ],
        ),
    ] = None

    project: Annotated[
        str | None,
        Field(
            max_length=MAX_NAME_LENGTH,
            description="Only this project's emails. A key sees only its own project's "
            "emails; a key with the `admin` scope sees every project's unless it names one "
            "here. Naming another project with a key without `admin` is a 403.",
            examples=["billing"],
        ),
    ] = None

    @field_validator("project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is None:
            return None
        known = {s.value for s in EmailStatus}
        parts = [p.strip() for p in value.split(",")]
        unknown = [p for p in parts if p not in known]
        if unknown or not parts:
            raise ValueError(
                f"unknown status {', '.join(unknown)!r}; "
                f"use one or more of: {', '.join(sorted(known))}"
            )
        return ",".join(parts)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return None if value is None else parse_mailbox(value).address.lower()

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
            raise ValueError(
                f"unknown time zone {value[:64]!r}: use an IANA name such as Europe/Berlin"
            ) from None
        return value

    _times_are_iso_8601 = field_validator("since", "until", mode="before")(iso_8601_only)

    @field_validator("since", "until")
    @classmethod
    def _instant(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        value = in_utc(value, ZoneInfo(info.data.get("tz", "UTC")))
        since = info.data.get("since")
        if info.field_name == "until" and since is not None and since >= value:
            raise ValueError("must be later than since")
        return value

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("page") is not None:
            raise ValueError("give either page or cursor, not both")
        decode_cursor(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def log_filter(self, project_id: uuid.UUID | None) -> LogFilter:
        """The filter these parameters make, on ``project_id``'s emails (None: every one's);
        the caller's access decides which (see ProjectAccess.project_id)."""
        return LogFilter(
            project_id=project_id,
            statuses=tuple(EmailStatus(s) for s in self.status.split(",")) if self.status else (),
            recipient=self.to,
            provider=self.provider,
            since=self.since,
            until=self.until,
        )

    def position(self) -> Position | None:
        return decode_cursor(self.cursor) if self.cursor else None
