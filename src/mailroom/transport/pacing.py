"""Pacing: each provider's rate and daily quota, shared by every worker process.

One Lua script, run atomically by Redis, looks at the providers an email may use (in
the router's weighted order) and reserves a slot at the first one free now, else at
the one free soonest within ``hold`` seconds; the caller sleeps until its slot. Slots
are spaced by the provider's interval (1 / rate; a "theoretical arrival time" per
provider), so arrivals at the provider are even, never bursts. The daily count is kept
per UTC day of the injected clock. When no provider is free within ``hold``, nothing is
reserved and the answer says when capacity returns.

If Redis cannot be reached, each process paces on its own at its share (1 / the number
of pacers seen in Redis lately) until Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from mailroom.breaker import Breaker
from mailroom.coalescer import Coalescer

log = structlog.get_logger(__name__)

DAY = 86400.0
SLOWDOWN_MAX = 16.0  # a throttled provider is slowed to 1/16 of its rate at most
_RESERVE_MAX = 200  # reservations one script call serves at most
_PACER_TTL = 15.0  # seconds a pacer counts as alive after it last said so

# One call serves every reservation made in the same turn of the event loop (a batch
# job's emails ask together). KEYS per lane j: tat, day count, slowdown, line.
# ARGV: now_ms, ms to midnight (UTC), the number of lanes, per lane: interval_ms (0: no
# rate), daily (0: no quota); then per request: hold_ms, m, and m lane numbers in order.
# Returns per request: lane number (0: none), wait in microseconds, daily quotas exhausted.
_RESERVE = """
local now, midnight, nl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval, daily, tat, count, line = {}, {}, {}, {}, {}
for j = 1, nl do
  local k = (j - 1) * 4
  interval[j], daily[j] = tonumber(ARGV[2 + 2 * j]), tonumber(ARGV[3 + 2 * j])
  if interval[j] > 0 then
    interval[j] = interval[j] * tonumber(redis.call('GET', KEYS[k + 3]) or '1')
  end
  tat[j] = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
  count[j] = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
  line[j] = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
end
local moved, counted, lined, out = {}, {}, {}, {}
local p = 4 + 2 * nl
while p <= #ARGV do
  local hold, m = tonumber(ARGV[p]), tonumber(ARGV[p + 1])
  p = p + 2
  local best, best_wait, later, later_wait, soonest, exhausted = 0, 0, 0, 0, -1, 1
  for c = 1, m do
    local j = tonumber(ARGV[p + c - 1])
    local wait = 0
    if daily[j] > 0 and count[j] >= daily[j] then
      wait = midnight
    else
      exhausted = 0
      -- (float noise of a microsecond is no wait, no difference)
      if interval[j] > 0 and tat[j] > now + 0.001 then wait = tat[j] - now end
      if wait <= hold + 0.001 and (best == 0 or wait < best_wait - 0.001) then
        best, best_wait = j, wait
      end
      if interval[j] > 0 and (later == 0 or wait < later_wait - 0.001) then
        later, later_wait = j, wait
      end
    end
    if soonest < 0 or wait < soonest then soonest = wait end
    if best == j and wait == 0 then break end
  end
  p = p + m
  if best > 0 then
    -- A slot: the next free one, then the provider's next is one interval later.
    if interval[best] > 0 then
      tat[best] = math.max(tat[best], now) + interval[best]
      moved[best] = true
    end
    if daily[best] > 0 then
      count[best] = count[best] + 1
      counted[best] = true
    end
    out[#out + 1], out[#out + 2], out[#out + 3] = best, math.floor(best_wait * 1000), 0
  elseif later > 0 then
    -- Turned away: a place in line at the provider free soonest, behind those turned
    -- away before, so that the emails come back one interval apart and in order.
    line[later] = math.max(line[later], tat[later]) + interval[later]
    lined[later] = true
    out[#out + 1], out[#out + 2], out[#out + 3] = 0, math.floor((line[later] - now) * 1000), 0
  else
    out[#out + 1], out[#out + 2], out[#out + 3] = 0, math.floor(soonest * 1000), exhausted
  end
end
for j in pairs(moved) do
  local ttl = math.floor(tat[j] - now) + 1000
  redis.call('SET', KEYS[(j - 1) * 4 + 1], string.format('%.3f', tat[j]), 'PX', ttl)
end
for j in pairs(counted) do
  redis.call('SET', KEYS[(j - 1) * 4 + 2], count[j], 'PX', math.floor(midnight) + 86400000)
end
for j in pairs(lined) do
  local ttl = math.floor(line[j] - now) + 1000
  redis.call('SET', KEYS[(j - 1) * 4 + 4], string.format('%.3f', line[j]), 'PX', ttl)
end
return out
"""

_SLOW_DOWN = """
local factor = math.min(tonumber(redis.call('GET', KEYS[1]) or '1') * 2, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], tostring(factor), 'PX', tonumber(ARGV[1]))
return tostring(factor)
"""


@dataclass(frozen=True)
class Lane:
    """What pacing knows of a provider."""

    name: str
    interval: float  # seconds between two messages; 0: no rate limit
    daily: int | None = None


@dataclass(frozen=True)
class Grant:
    """A slot at ``lane`` in ``wait`` seconds; or, with no lane, when capacity returns."""

    lane: Lane | None
    wait: float
    daily_exhausted: bool = False


class Pacer:
    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        retry_after: float = 5.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._reserve = client.register_script(_RESERVE)
        self._together: Coalescer[tuple[tuple[Lane, ...], float], Grant] = Coalescer(
            self._reserve_shared, max_items=_RESERVE_MAX
        )
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._redis_down = Breaker(retry_after)
        self._local = LocalPacer(clock=clock)
        self._id = uuid.uuid4().hex
        self.pacers = 1  # processes pacing together, as last seen in Redis

    def key(self, name: str, what: str) -> str:
        return f"{self._prefix}:providers:{name}:{what}"

    async def reserve(self, lanes: Sequence[Lane], hold: float) -> Grant:
        if not lanes:
            return Grant(None, 0.0)
        if not self._redis_down.is_open:
            try:
                return await self._together.submit((tuple(lanes), hold))
            except (RedisError, OSError) as exc:
                self._redis_down.trip()
                log.warning(
                    "pacing.redis_unreachable",
                    error=type(exc).__name__,
                    share=f"1/{self.pacers}",
                    hint="each worker paces at its share of every provider's rate until "
                    "Redis answers",
                )
        self._local.share = 1.0 / max(1, self.pacers)
        return self._local.reserve(lanes, hold)

    async def _reserve_shared(self, requests: list[tuple[tuple[Lane, ...], float]]) -> list[Grant]:
        now = self._clock()
        day = math.floor(now / DAY)
        numbers: dict[str, int] = {}
        lanes: list[Lane] = []
        for candidates, _ in requests:
            for lane in candidates:
                if lane.name not in numbers:
                    numbers[lane.name] = len(lanes) + 1
                    lanes.append(lane)
        keys: list[str] = []
        args: list[float | int] = [now * 1000, ((day + 1) * DAY - now) * 1000, len(lanes)]
        for lane in lanes:
            keys += [self.key(lane.name, "tat"), self.key(lane.name, f"day:{day}")]
            keys += [self.key(lane.name, "slow"), self.key(lane.name, "line")]
            args += [lane.interval * 1000, lane.daily or 0]
        for candidates, hold in requests:
            args += [hold * 1000, len(candidates), *(numbers[lane.name] for lane in candidates)]
        answer = await self._reserve(keys=keys, args=args)
        grants = []
        for i in range(0, len(answer), 3):
            number, wait_us, exhausted = (int(x) for x in answer[i : i + 3])
            granted = lanes[number - 1] if number else None
            grants.append(Grant(granted, wait_us / 1_000_000, daily_exhausted=bool(exhausted)))
        return grants

    async def slow_down(self, name: str, seconds: float) -> float:
        """Halve ``name``'s rate (to 1/16 at most) for ``seconds``; returns the divisor."""
        local = self._local.slow_down(name, seconds)
        if self._redis_down.is_open:
            return local
        try:
            factor = await self._slow_down(
                keys=[self.key(name, "slow")], args=[round(seconds * 1000), SLOWDOWN_MAX]
            )
        except (RedisError, OSError):
            self._redis_down.trip()
            return local
        return float(factor)

    def slowdown(self, name: str) -> float:
        """The divisor this process last applied to ``name``'s rate (1: full rate)."""
        return self._local.slowdown(name)

    async def heartbeat(self) -> None:
        """Say this pacer is alive, and count the pacers alive (for the share)."""
        now = self._clock()
        key = f"{self._prefix}:providers:pacers"
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {self._id: now})
                pipe.zremrangebyscore(key, "-inf", now - _PACER_TTL)
                pipe.zcard(key)
                pipe.expire(key, round(_PACER_TTL * 4))
                *_, count, _ = await pipe.execute()
            self.pacers = max(1, int(count))
        except (RedisError, OSError):
            self._redis_down.trip()

    async def publish(self, states: dict[str, str]) -> None:
        """Publish this process's view of each provider's breaker (for /ready and the CLI)."""
        key = breakers_key(self._prefix)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=states)
                pipe.expire(key, round(_PACER_TTL * 2))
                await pipe.execute()
        except (RedisError, OSError):
            self._redis_down.trip()

    async def leave(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.zrem(f"{self._prefix}:providers:pacers", self._id)


def breakers_key(prefix: str) -> str:
    return f"{prefix}:providers:breakers"


async def read_breakers(client: Redis, prefix: str) -> dict[str, str]:
    """Each provider's breaker as the workers last published it (empty: none running)."""
    raw: dict[object, object] = await client.hgetall(breakers_key(prefix))  # type: ignore[misc]
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


class LocalPacer:
    """The same pacing, in this process alone, at ``share`` of each rate and quota."""

    def __init__(self, *, clock: Callable[[], float] = time.time, share: float = 1.0) -> None:
        self._clock = clock
        self.share = share
        self._tat: dict[str, float] = {}
        self._line: dict[str, float] = {}
        self._count: dict[tuple[str, int], int] = {}
        self._slow: dict[str, tuple[float, float]] = {}  # name → (divisor, until)

    def _interval(self, lane: Lane) -> float:
        return lane.interval * self.slowdown(lane.name) / self.share

    def slow_down(self, name: str, seconds: float) -> float:
        factor = min(self.slowdown(name) * 2, SLOWDOWN_MAX)
        self._slow[name] = (factor, self._clock() + seconds)
        return factor

    def slowdown(self, name: str) -> float:
        factor, until = self._slow.get(name, (1.0, 0.0))
        return factor if self._clock() < until else 1.0

    def reserve(self, lanes: Sequence[Lane], hold: float) -> Grant:
        now = self._clock()
        day = math.floor(now / DAY)
        midnight = (day + 1) * DAY - now
        best: tuple[Lane, float] | None = None
        later: tuple[Lane, float] | None = None
        soonest: float | None = None
        exhausted = True
        for lane in lanes:
            wait = 0.0
            quota = math.floor((lane.daily or 0) * self.share)
            if lane.daily and self._count.get((lane.name, day), 0) >= quota:
                wait = midnight
            else:
                exhausted = False
                if lane.interval > 0:
                    wait = self._tat.get(lane.name, 0.0) - now
                    wait = wait if wait > 1e-6 else 0.0
                    if later is None or wait < later[1] - 1e-6:
                        later = (lane, wait)
                if wait <= hold + 1e-6 and (best is None or wait < best[1] - 1e-6):
                    best = (lane, wait)
            soonest = wait if soonest is None else min(soonest, wait)
            if best is not None and best[1] == 0:
                break
        if best is None and later is not None:
            # Turned away: a place in line behind those turned away before (as the script).
            lane = later[0]
            start = max(self._line.get(lane.name, 0.0), self._tat.get(lane.name, 0.0))
            self._line[lane.name] = start + self._interval(lane)
            return Grant(None, self._line[lane.name] - now)
        if best is None:
            return Grant(None, soonest or 0.0, daily_exhausted=exhausted)
        lane, wait = best
        if lane.interval > 0:
            self._tat[lane.name] = max(self._tat.get(lane.name, 0.0), now) + self._interval(lane)
        if lane.daily:
            self._count[(lane.name, day)] = self._count.get((lane.name, day), 0) + 1
        return Grant(lane, wait)


async def sleep_until_slot(wait: float) -> None:
    if wait > 0:
        await asyncio.sleep(wait)
