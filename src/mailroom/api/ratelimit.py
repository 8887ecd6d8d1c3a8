"""Rate limiting POST /send with `limits` (sliding window counter) on Redis.

Shared by every API process. If Redis cannot answer, requests are let through (and
logged): Mailroom keeps accepting mail while Redis is down, as the sweeper will
dispatch it later.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from mailroom.queue.dispatcher import REDIS_RETRY_AFTER
from mailroom.settings import Settings

log = structlog.get_logger(__name__)

_TIMEOUT = 1.0  # seconds; past it the request goes through unlimited


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_in: int  # seconds until a request is certain to be allowed again
    window: int  # seconds

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_in),
            "RateLimit-Policy": f"{self.limit};w={self.window}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_in))
        return headers


class SendRateLimiter:
    def __init__(self, settings: Settings) -> None:
        url = settings.redis_url.replace("redis://", "async+redis://", 1).replace(
            "rediss://", "async+rediss://", 1
        )
        self._storage = RedisStorage(
            url, implementation="redispy", key_prefix=f"{settings.queue_prefix}:ratelimit"
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._default = settings.send_rate_limit
        self._items: dict[str, RateLimitItem] = {}
        self._skip_until = 0.0

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, identity: str, limit: str | None = None) -> RateLimitResult | None:
        """Count one request for ``identity``; None when Redis could not be asked."""
        item = self._item(limit or self._default)
        if time.monotonic() < self._skip_until:
            return None
        try:
            async with asyncio.timeout(_TIMEOUT):
                allowed = await self._limiter.hit(item, identity)
                reset_at, remaining = await self._limiter.get_window_stats(item, identity)
        except Exception as exc:  # noqa: BLE001 - any Redis fault: fail open, loudly
            self._skip_until = time.monotonic() + REDIS_RETRY_AFTER
            log.warning("ratelimit.unavailable", error=str(exc) or type(exc).__name__)
            return None
        return RateLimitResult(
            allowed=allowed,
            limit=item.amount,
            remaining=remaining,
            reset_in=max(0, math.ceil(reset_at - time.time())),
            window=item.get_expiry(),
        )

    async def aclose(self) -> None:
        # limits keeps its redis-py client on the storage's bridge and has no close().
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
