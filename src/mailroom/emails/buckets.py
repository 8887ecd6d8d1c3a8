"""The 15-minute buckets the email counters are kept in (see models.EmailCount).

Every time zone in use today is offset from UTC by a multiple of 15 minutes, so any
zone's day, and any range a caller asks for, is whole buckets plus at most two
partial ones at its edges (counted row by row).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Keep in step with migration 0003 (date_bin('15 minutes', …, '2000-01-01 00:00:00+00')).
BUCKET = timedelta(minutes=15)
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def floor(instant: datetime) -> datetime:
    """The start of the bucket holding ``instant``."""
    return instant - (instant - ORIGIN) % BUCKET


def ceil(instant: datetime) -> datetime:
    """The first bucket boundary at or after ``instant``."""
    start = floor(instant)
    return start if start == instant else start + BUCKET
