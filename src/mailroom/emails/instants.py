"""Times as the API takes them: ISO 8601 only, and always an instant in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def iso_8601_only(value: object) -> object:
    """Refuse numbers, which pydantic would otherwise read as Unix times."""
    if isinstance(value, int | float) or (
        isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    ):
        raise ValueError("must be an ISO 8601 date or date-time, e.g. 2026-11-27T10:00:00Z")
    return value


def in_utc(value: datetime, zone: tzinfo = UTC) -> datetime:
    """The instant, in UTC; a time without an offset is read in ``zone``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
