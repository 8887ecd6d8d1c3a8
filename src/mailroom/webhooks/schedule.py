"""When a failed delivery is tried again: the schedule, jitter and Retry-After."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

JITTER = 0.1  # each wait is moved by up to 10 % either way


def next_wait(
    failed_attempts: int,
    schedule: Sequence[float],
    *,
    rng: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until the next attempt after ``failed_attempts`` failures, None when the
    schedule is spent.

    A receiver's Retry-After (429, 503) is honoured within the schedule: it may push the
    next attempt later, never past the schedule's longest wait, and never sooner.
    """
    if failed_attempts < 1 or failed_attempts > len(schedule):
        return None
    wait = schedule[failed_attempts - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        wait = max(wait, min(retry_after, max(schedule)))
    return wait


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
