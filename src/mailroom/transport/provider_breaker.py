"""A circuit breaker per provider: closed, open for PROVIDER_COOLDOWN, then one probe.

Closed, the provider takes mail. A provider-level failure opens it: no email is sent
there for ``cooldown`` seconds. Then it is half-open: one email at a time is let through
as a probe; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ProviderBreaker:
    def __init__(self, cooldown: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown
        self._clock = clock
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() < self._opened_at + self._cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def reopens_in(self) -> float:
        """Seconds until a probe may go (0 when closed or half-open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def available(self) -> bool:
        """Whether an email may go to the provider now (without taking the probe)."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self._probing
        )

    def take(self) -> bool:
        """Claim the way through: always when closed, once at a time when half-open."""
        if not self.available():
            return False
        if self.state is BreakerState.HALF_OPEN:
            self._probing = True
        return True

    def succeeded(self) -> bool:
        """The provider answered for itself; True if this closed the breaker."""
        was_open = self._opened_at is not None
        self._opened_at = None
        self._probing = False
        return was_open

    def failed(self) -> bool:
        """A provider-level failure; True if this opened a closed breaker."""
        was_closed = self._opened_at is None
        self._opened_at = self._clock()
        self._probing = False
        return was_closed

    def released(self) -> None:
        """The email that took the probe never reached the provider (paced elsewhere)."""
        self._probing = False
