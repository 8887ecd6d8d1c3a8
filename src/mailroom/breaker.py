"""A circuit breaker for Redis: after a failure, skip it for a while instead of waiting on it.

While Redis is down, every POST /send would otherwise wait ENQUEUE_TIMEOUT for the
dispatch and another second for the rate limiter, for nothing. The dispatcher and the
rate limiter each keep one breaker: a failure opens it for ``REDIS_RETRY_AFTER``
seconds, during which they do without Redis (the sweeper dispatches later; requests go
through unlimited), and the first call after that tries Redis again.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_after = retry_after
        self._clock = clock
        self._closed_at = 0.0

    @property
    def is_open(self) -> bool:
        """True while calls should skip Redis."""
        return self._clock() < self._closed_at

    def trip(self) -> None:
        """Redis just failed: skip it for the next ``retry_after`` seconds."""
        self._closed_at = self._clock() + self._retry_after
