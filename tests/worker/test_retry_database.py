"""Recording an SMTP outcome survives a PostgreSQL blip, within the whole retry budget.

These pin the policy: what is retried, the waits (0.2 s doubling, the last cut to what
is left of the budget), and the logs.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from structlog.testing import capture_logs

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
    with capture_logs() as logs, pytest.raises(OperationalError):
        await _retry_database(write, budget=0.7)
    elapsed = loop.time() - started
    # Waits 0.2 and 0.4, then the 0.1 s left of the budget, rather than stopping at 0.6.
    assert elapsed >= 0.7
    assert calls == 4
    retrying = [e for e in logs if e["event"] == "db.retrying"]
    assert [e["retry_in_s"] for e in retrying[:2]] == [0.2, 0.4]
    assert len(retrying) == 3 and 0 < retrying[2]["retry_in_s"] <= 0.1
    assert {e["error"] for e in retrying} == {"OperationalError"}
    [gave_up] = [e for e in logs if e["event"] == "db.retry_gave_up"]
    assert (gave_up["error"], gave_up["budget_s"], gave_up["log_level"]) == (
        "OperationalError",
        0.7,
        "error",
    )


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


async def test_other_database_errors_are_not_retried_but_a_lost_connection_is() -> None:
    calls = 0

    async def write() -> str:
        nonlocal calls
        calls += 1
        raise DBAPIError("INSERT", {}, ValueError("violates check constraint"))

    with capture_logs() as logs, pytest.raises(DBAPIError):
        await _retry_database(write, budget=5)
    assert calls == 1
    assert logs == []

    async def invalidated() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DBAPIError("INSERT", {}, ValueError("closed"), connection_invalidated=True)
        return "recorded"

    assert await _retry_database(invalidated, budget=5) == "recorded"
    assert calls == 3


async def test_a_cancelled_operation_is_not_retried() -> None:
    calls = 0
    started = asyncio.Event()

    async def write() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()  # until cancelled
        return "never"

    task = asyncio.ensure_future(_retry_database(write, budget=5))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
