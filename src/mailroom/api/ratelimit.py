"""Rate limiting POST /send: a sliding window counter in Redis, one round trip per request.

Our own Lua script, not `limits`' strategies: their two calls a request cost 21 % of its CPU.

Shared by every API process. The algorithm is the one `limits` calls the sliding
window counter: a counter per fixed window, and the previous window's count
weighted by how much of it still overlaps the sliding window. It runs as one Lua
script (read both counters, decide, count) where the `limits` strategies make two calls
(hit, then window stats for the headers), and concurrent requests' scripts share one
pipeline. `limits` still parses the limits ("100/second").

If Redis cannot answer, requests are let through (and logged): Mailroom keeps
accepting mail while Redis is down, as the sweeper will dispatch it later. Only the
Redis call itself is timed (not the wait for a turn of a busy event loop), a failed call
lets through only the requests it carried, and limits are off for a while only during an
outage (see breaker).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
import structlog
from limits import RateLimitItem, parse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from mailroom.breaker import Breaker
from mailroom.coalescer import Coalescer
from mailroom.settings import Settings

log = structlog.get_logger(__name__)

_TIMEOUT = 1.0  # seconds for one Redis call; past it its requests go through unlimited
_FAILURES_TO_OPEN = 3  # calls failing in a row that mean Redis is down
_COALESCE_MAX_HITS = 200
# This window's key, the previous window's, the limit, the window (ms), ms into it.
_Hit = tuple[str, str, int, int, int]

# KEYS: this window's counter, the previous window's. ARGV: limit, window (ms), ms
# elapsed in this window. Returns {allowed (1/0), the weighted count of the sliding
# window (this request included when allowed; a string, as Redis would truncate a
# Lua number), this window's count, the previous one's}.
_HIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local used = previous * (window - elapsed) / window + current
if used + 1 <= limit then
    current = redis.call('INCR', KEYS[1])
    if current == 1 then
        redis.call('PEXPIRE', KEYS[1], 2 * window + 1000)
    end
    return {1, tostring(used + 1), current, previous}
end
return {0, tostring(used), current, previous}
"""


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


def wait_for_room(limit: int, window: float, elapsed: float, current: int, previous: int) -> float:
    """Seconds until the sliding window holds fewer than ``limit`` requests again.

    Within this window only the previous window's share decays; once this window
    ends, this window's count becomes the one that decays.
    """
    if current + 1 <= limit:
        if previous == 0:
            return 0.0
        # previous * (window - t) / window + current + 1 <= limit
        at = window * (1 - (limit - current - 1) / previous)
        return max(0.0, at - elapsed)
    # current * (window - t) / window + 1 <= limit, t into the next window
    at = window * (1 - (limit - 1) / current)
    return (window - elapsed) + max(0.0, at)


class SendRateLimiter:
    def __init__(self, settings: Settings) -> None:
        self._client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
        )
        self._sha = hashlib.sha1(_HIT.encode(), usedforsecurity=False).hexdigest()
        # Concurrent requests' hits go to Redis in one pipeline (one connection, one
        # write, one read), which costs less per request than a call of its own.
        self._hits: Coalescer[_Hit, list[Any] | BaseException] = Coalescer(
            self._run_together, max_items=_COALESCE_MAX_HITS
        )
        self._prefix = f"{settings.queue_prefix}:ratelimit"
        self._default = settings.send_rate_limit
        self._items: dict[str, RateLimitItem] = {}
        # During an outage, requests go through unlimited for a while without asking Redis.
        self._breaker = Breaker(failures=_FAILURES_TO_OPEN)

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, identity: str, limit: str | None = None) -> RateLimitResult | None:
        """Count one request for ``identity``; None when Redis could not be asked."""
        item = self._item(limit or self._default)
        if self._breaker.is_open:
            return None
        window = item.get_expiry()
        now = time.time()
        index = int(now // window)
        elapsed = now - index * window
        base = f"{self._prefix}:{item.amount}/{window}:{identity}"
        hit = (f"{base}:{index}", f"{base}:{index - 1}", item.amount, window * 1000)
        try:
            answer = await self._hits.submit((*hit, int(elapsed * 1000)))
        except Exception:  # noqa: BLE001 - the call failed (logged once, in _run_together)
            return None
        if isinstance(answer, BaseException):  # Redis answered this one hit with an error
            log.warning("ratelimit.hit_failed", error=str(answer) or type(answer).__name__)
            return None
        allowed, used, current, previous = answer
        weighted = float(used)
        # 0 while there is room for another request; otherwise when there will be.
        reset = (
            0.0
            if weighted + 1 <= item.amount
            else wait_for_room(item.amount, window, elapsed, int(current), int(previous))
        )
        return RateLimitResult(
            allowed=bool(allowed),
            limit=item.amount,
            remaining=max(0, math.floor(item.amount - weighted)),
            reset_in=math.ceil(reset),
            window=window,
        )

    async def _run_together(self, hits: list[_Hit]) -> list[list[Any] | BaseException]:
        try:
            # The timer starts here, once the hits are on their way: waiting for a turn of
            # a busy event loop before that is not Redis being slow.
            async with asyncio.timeout(_TIMEOUT):
                answers = await self._pipeline(hits)
                if any(isinstance(a, NoScriptError) for a in answers):
                    # Redis restarted or its scripts were flushed: load it, and run them
                    # again (a hit that met NOSCRIPT counted nothing).
                    await self._client.script_load(_HIT)
                    answers = await self._pipeline(hits)
        except Exception as exc:
            # A refused or broken connection is an outage; a slow answer counts once.
            self._breaker.failed(outage=isinstance(exc, RedisConnectionError))
            log.warning(
                "ratelimit.unavailable",
                error=str(exc) or type(exc).__name__,
                requests_let_through=len(hits),
                limits_paused=self._breaker.is_open,
            )
            raise
        self._breaker.succeeded()
        return answers

    async def _pipeline(self, hits: list[_Hit]) -> list[list[Any] | BaseException]:
        pipeline = self._client.pipeline(transaction=False)
        for current, previous, limit, window, elapsed in hits:
            pipeline.evalsha(self._sha, 2, current, previous, limit, window, elapsed)
        return list(await pipeline.execute(raise_on_error=False))

    async def aclose(self) -> None:
        await self._client.aclose()
