"""KeyChecker: one database load per key however many requests find its cache entry stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailroom.auth.service import KeyChecker
from mailroom.db.engine import create_engine, create_session_factory
from mailroom.settings import Settings
from tests.conftest import make_key
from tests.support.waiting import eventually


class CountedLoads:
    """Key lookups (SELECTs on api_keys) sent through one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self.sessions = create_session_factory(engine)
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            self.count += 1


@pytest.fixture
async def loads(settings: Settings) -> AsyncIterator[CountedLoads]:
    engine = create_engine(settings, pool_size=20)
    yield CountedLoads(engine)
    await engine.dispose()


async def test_concurrent_requests_for_an_uncached_key_load_it_once(
    sessions: async_sessionmaker[AsyncSession], loads: CountedLoads
) -> None:
    key = await make_key(sessions)
    checker = KeyChecker(loads.sessions, ttl=60)

    principals = await asyncio.gather(*(checker.check(key) for _ in range(50)))

    assert loads.count == 1
    assert all(p is not None for p in principals)
    assert len({p.key_id for p in principals if p is not None}) == 1
    # Cached from then on.
    assert await checker.check(key) == principals[0]
    assert loads.count == 1


async def test_an_expired_entry_is_loaded_again_once(
    sessions: async_sessionmaker[AsyncSession], loads: CountedLoads
) -> None:
    key = await make_key(sessions)
    checker = KeyChecker(loads.sessions, ttl=0)  # every check finds it expired

    await checker.check(key)
    await asyncio.gather(*(checker.check(key) for _ in range(20)))

    assert loads.count == 2


async def test_a_request_that_goes_away_does_not_cancel_the_others_load(
    sessions: async_sessionmaker[AsyncSession], loads: CountedLoads
) -> None:
    key = await make_key(sessions)
    checker = KeyChecker(loads.sessions, ttl=60)

    leaving = asyncio.ensure_future(checker.check(key))
    staying = asyncio.ensure_future(checker.check(key))
    await asyncio.sleep(0)  # both are waiting on the one load
    leaving.cancel()

    assert await staying is not None
    assert leaving.cancelled()
    assert loads.count == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_unknown_key_is_looked_up_once_per_cache_lifetime(loads: CountedLoads) -> None:
    from mailroom.auth.keys import generate_key

    unknown = generate_key()
    clock = Clock()
    checker = KeyChecker(loads.sessions, ttl=5, clock=clock)

    assert await asyncio.gather(*(checker.check(unknown) for _ in range(10))) == [None] * 10
    assert loads.count == 1  # the concurrent ten share one load
    for _ in range(100):  # a client retrying a wrong key costs no lookup
        assert await checker.check(unknown) is None
    assert loads.count == 1
    clock.now += 5
    assert await checker.check(unknown) is None
    assert loads.count == 2


async def test_without_a_cache_an_unknown_key_is_looked_up_every_time(
    loads: CountedLoads,
) -> None:
    from mailroom.auth.keys import generate_key

    unknown = generate_key()
    checker = KeyChecker(loads.sessions, ttl=0)
    for _ in range(3):
        assert await checker.check(unknown) is None
    assert loads.count == 3


async def test_random_unknown_keys_evict_only_each_other(
    sessions: async_sessionmaker[AsyncSession], loads: CountedLoads
) -> None:
    from mailroom.auth.keys import generate_key

    class Small(KeyChecker):
        _CACHED_KEYS = 3

    key = await make_key(sessions)
    checker = Small(loads.sessions, ttl=60)
    assert await checker.check(key) is not None
    first, *others = [generate_key() for _ in range(4)]
    for unknown in (first, *others):
        assert await checker.check(unknown) is None
    assert loads.count == 5
    assert await checker.check(key) is not None  # still cached
    assert await checker.check(others[-1]) is None  # still remembered
    assert loads.count == 5
    assert await checker.check(first) is None  # evicted: asked again
    assert loads.count == 6


async def test_a_revoked_key_stops_working_within_the_cache_lifetime(
    sessions: async_sessionmaker[AsyncSession], loads: CountedLoads
) -> None:
    from mailroom.auth.service import revoke_key

    key = await make_key(sessions)
    checker = KeyChecker(loads.sessions, ttl=0.2)
    principal = await checker.check(key)
    assert principal is not None
    async with sessions() as session:
        await revoke_key(session, principal.name)
        await session.commit()

    async def checked() -> object:
        return await checker.check(key)

    await eventually(checked, lambda found: found is None, timeout=2, what="the key refused")
