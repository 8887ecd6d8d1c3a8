"""Recording an SMTP outcome survives a PostgreSQL blip, within the whole retry budget."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from mailroom.worker.delivery import _retry_database


def _outage() -> OperationalError:
    return OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))


async def test_a_write_that_fails_a_few_times_goes_through() -> None:
    calls = 0

    async def write() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise _outage()
        return "recorded"

    assert await _retry_database(write, budget=5) == "recorded"
    assert calls == 3


async def test_it_keeps_trying_for_the_whole_budget_then_gives_up() -> None:
    calls = 0

    async def write() -> str:
        nonlocal calls
        calls += 1
        raise _outage()

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OperationalError):
        await _retry_database(write, budget=0.7)
    elapsed = loop.time() - started
    # Waits 0.2 and 0.4, then the 0.1 s left of the budget, rather than stopping at 0.6.
    assert elapsed >= 0.7
    assert calls == 4


async def test_a_non_connection_error_is_not_retried() -> None:
    calls = 0

    async def write() -> str:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await _retry_database(write, budget=5)
    assert calls == 1


class _Deadlock(Exception):
    sqlstate = "40P01"


async def test_a_deadlock_is_run_again() -> None:
    calls = 0

    async def write() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DBAPIError("UPDATE emails", {}, _Deadlock("deadlock detected"))
        return "recorded"

    assert await _retry_database(write, budget=5) == "recorded"
    assert calls == 2
