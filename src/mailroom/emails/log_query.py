"""The query of ``GET /logs/email``: filters, paging, the opaque cursor and "today"."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailroom.emails.addresses import parse_mailbox
from mailroom.emails.repository import LogFilter, Position
from mailroom.emails.states import EmailStatus

MAX_LIMIT = 100
_CURSOR_VERSION = 1


def encode_cursor(position: Position) -> str:
    payload = {"v": _CURSOR_VERSION, "t": position.created_at.isoformat(), "i": str(position.id)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """Raises ValueError for anything that is not a cursor this service produced."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("v") != _CURSOR_VERSION:
            raise ValueError
        created_at = datetime.fromisoformat(payload["t"])
        if created_at.tzinfo is None:
            raise ValueError
        return Position(created_at=created_at, id=uuid.UUID(payload["i"]))
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError("is not a valid cursor: pass back a nextCursor unchanged") from None


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in a zone; 23 or 25 hours long on DST changes."""
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start, end


class LogQuery(BaseModel):
    """Query parameters of GET /logs/email."""

    model_config = ConfigDict(extra="forbid")

    page: Annotated[
        int | None, Field(ge=1, le=1_000_000, description="1-based page number (default 1)")
    ] = None
    limit: Annotated[
        int, Field(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}")
    ] = 20
    status: Annotated[
        str | None,
        Field(
            description="Only these statuses, comma-separated "
            "(queued, sending, retrying, sent, failed)"
        ),
    ] = None
    to: Annotated[
        str | None, Field(description="Only emails with this recipient (to, cc or bcc)")
    ] = None
    since: Annotated[datetime | None, Field(description="Created at or after (ISO 8601)")] = None
    until: Annotated[datetime | None, Field(description="Created before (ISO 8601)")] = None
    tz: Annotated[str, Field(description="IANA time zone that fixes 'today' for the summary")] = (
        "UTC"
    )
    cursor: Annotated[
        str | None, Field(description="nextCursor of a previous page (keyset paging)")
    ] = None

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

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> LogQuery:
        if self.page is not None and self.cursor is not None:
            raise ValueError("give either page or cursor, not both")
        if (
            self.since is not None
            and self.until is not None
            and self._aware(self.since) >= self._aware(self.until)
        ):
            raise ValueError("since must be earlier than until")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def _aware(self, value: datetime) -> datetime:
        # A time without an offset is read in the query's own time zone.
        return value if value.tzinfo is not None else value.replace(tzinfo=self.zone)

    def log_filter(self) -> LogFilter:
        return LogFilter(
            statuses=tuple(EmailStatus(s) for s in self.status.split(",")) if self.status else (),
            recipient=self.to,
            since=self._aware(self.since) if self.since else None,
            until=self._aware(self.until) if self.until else None,
        )

    def position(self) -> Position | None:
        return decode_cursor(self.cursor) if self.cursor else None
