"""What happens after an attempt: deliver, fail, or try again later (and when)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from mailroom.emails.states import DEFER, DELIVER, FAIL, Transition
from mailroom.transport.base import Outcome, SendResult


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based).

    Exponential, capped, with "equal jitter": a random half of the delay is kept,
    so a burst of deferrals does not come back as a burst, yet no retry comes
    earlier than half its slot.
    """
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass(frozen=True)
class Decision:
    transition: Transition
    delay: float | None = None  # seconds until the next attempt, for DEFER


def decide(
    result: SendResult,
    attempt: int,
    *,
    max_attempts: int,
    base: float,
    cap: float,
    rng: random.Random,
) -> Decision:
    if result.outcome is Outcome.ACCEPTED:
        return Decision(DELIVER)
    if result.outcome is Outcome.INTERRUPTED:
        # Our own shutdown is no fault of the email: it never uses up the last attempt,
        # and the retry comes soon.
        return Decision(DEFER, backoff_delay(1, base=base, cap=cap, rng=rng))
    if result.outcome is Outcome.PERMANENT or attempt >= max_attempts:
        return Decision(FAIL)
    if result.retry_now:
        # The provider failed, not the email, and another provider is healthy: go there now.
        return Decision(DEFER, 0.0)
    delay = backoff_delay(attempt, base=base, cap=cap, rng=rng)
    if result.retry_after is not None:
        # The server said when to come back: honour it, within our cap.
        delay = min(cap, max(delay, result.retry_after))
    return Decision(DEFER, delay)
