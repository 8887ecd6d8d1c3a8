"""A circuit breaker for Redis: during an outage, skip it for a while instead of waiting on it.

While Redis is down, every POST /send would otherwise wait ENQUEUE_TIMEOUT for the
dispatch and another second for the rate limiter, for nothing. The dispatcher and the
rate limiter each keep one breaker. Open, it makes them do without Redis for
``REDIS_RETRY_AFTER`` seconds (the sweeper dispatches later; requests go through
unlimited), and the first call after that tries Redis again.

The dispatcher opens it on any failure (``trip``). The rate limiter reports each call
(``failed``, ``succeeded``): one slow or failed answer lets only the requests of that
call through, and the breaker opens on an outage, a refused or broken connection or
``failures`` calls failing in a row, so that a single hiccup never switches every key's
limit off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

REDIS_RETRY_AFTER = 5.0  # seconds


class Breaker:
    def __init__(
        self,
        retry_after: float = REDIS_RETRY_AFTER,
        *,
        failures: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_after = retry_after
        self._failures_to_open = failures
        self._failures = 0
        self._clock = clock
        self._closed_at = 0.0

    @property
    def is_open(self) -> bool:
        """True while calls should skip Redis."""
        return self._clock() < self._closed_at

    def trip(self) -> None:
        """Redis just failed: skip it for the next ``retry_after`` seconds."""
        self._closed_at = self._clock() + self._retry_after
        self._failures = 0

    def failed(self, *, outage: bool = False) -> None:
        """A call failed; open if it was an outage or the ``failures``-th in a row."""
        self._failures += 1
        if outage or self._failures >= self._failures_to_open:
            self.trip()

    def succeeded(self) -> None:
        self._failures = 0
