"""every(): the one loop behind counters, retention, the sweeper, the heartbeat and leases."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from structlog.testing import capture_logs

from mailroom import periodic
from mailroom.periodic import JITTER, RunAgainIn, every, jittered


class Runs:
    """A piece of work that records when it ran and fails on the runs it is told to."""

    def __init__(self, *, failing: set[int] | None = None) -> None:
        self.at: list[float] = []
        self.failing = failing or set()
        self.ran = asyncio.Event()

    async def __call__(self) -> None:
        self.at.append(asyncio.get_running_loop().time())
        self.ran.set()
        if len(self.at) in self.failing:
            raise RuntimeError(f"run {len(self.at)} failed")

    async def until(self, count: int) -> None:
        async with asyncio.timeout(15):
            while len(self.at) < count:
                self.ran.clear()
                await self.ran.wait()


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- jitter ------------------------------------------------------------------------------


def test_jitter_stays_within_its_bound_either_way() -> None:
    rng = random.Random(7)
    waits = [jittered(10.0, rng) for _ in range(10_000)]
    assert min(waits) >= 10.0 * (1 - JITTER)
    assert max(waits) <= 10.0 * (1 + JITTER)
    # Spread over the range, not stuck at one end: processes started together drift apart.
    assert min(waits) < 9.1 and max(waits) > 10.9


def test_no_jitter_is_the_interval_itself() -> None:
    assert jittered(2.5, random.Random(), jitter=0) == 2.5


# -- interval ----------------------------------------------------------------------------


async def test_runs_are_an_interval_apart_and_the_first_waits_one_too() -> None:
    runs = Runs()
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(every(0.05, runs, event="test.failed"))
    await runs.until(3)
    await _stopped(task)

    shortest = 0.05 * (1 - JITTER) - 0.001
    assert runs.at[0] - started >= shortest
    assert all(later - earlier >= shortest for earlier, later in itertools.pairwise(runs.at))


async def test_a_first_delay_of_zero_runs_at_once() -> None:
    runs = Runs()
    task = asyncio.create_task(every(3600, runs, event="test.failed", first_delay=0))
    await runs.until(1)
    await _stopped(task)
    assert len(runs.at) == 1


async def test_a_run_can_ask_for_its_next_one_sooner() -> None:
    runs = Runs()

    async def busy() -> RunAgainIn | None:
        await runs()
        return RunAgainIn(0) if len(runs.at) < 3 else None  # a backlog, then the hourly pace

    task = asyncio.create_task(every(3600, busy, event="test.failed", first_delay=0))
    await runs.until(3)
    await _stopped(task)
    assert len(runs.at) == 3


async def test_it_returns_when_while_says_no() -> None:
    consumer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    runs = Runs()
    task = asyncio.create_task(
        every(0.01, runs, event="test.failed", first_delay=0, while_=lambda: not consumer.done())
    )
    await runs.until(2)
    consumer.set_result(None)
    await asyncio.wait_for(task, timeout=15)  # returned by itself, not cancelled
    assert task.result() is None


# -- failures ----------------------------------------------------------------------------


async def test_a_failure_is_logged_and_the_loop_goes_on() -> None:
    runs = Runs(failing={1, 2, 4})
    with capture_logs() as logs:
        task = asyncio.create_task(every(0.01, runs, event="test.failed", log_fields={"emails": 3}))
        await runs.until(5)
        await _stopped(task)

    # Runs 1 and 2 are one outage: logged once. Run 3 worked, so run 4 is a new one.
    assert logs == [
        {"event": "test.failed", "log_level": "warning", "error": "run 1 failed",
         "failures": 1, "emails": 3},
        {"event": "test.failed", "log_level": "warning", "error": "run 4 failed",
         "failures": 1, "emails": 3},
    ]  # fmt: skip


async def test_a_long_outage_is_logged_again_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(periodic, "REPEAT_LOG_AFTER", 0.0)
    runs = Runs(failing={1, 2, 3})
    with capture_logs() as logs:
        task = asyncio.create_task(every(0.01, runs, event="test.failed"))
        await runs.until(4)
        await _stopped(task)
    assert [entry["failures"] for entry in logs] == [1, 2, 3]


async def test_a_long_error_message_is_cut() -> None:
    async def verbose() -> None:
        raise RuntimeError("x" * 5000)

    with capture_logs() as logs:
        await every(0.01, verbose, event="test.failed", first_delay=0, stop_on_failure=True)
    [entry] = logs
    assert len(entry["error"]) == 300


async def test_an_error_without_a_message_is_named() -> None:
    async def silent() -> None:
        raise TimeoutError

    with capture_logs() as logs:
        await every(0.01, silent, event="test.failed", first_delay=0, stop_on_failure=True)
    assert [entry["error"] for entry in logs] == ["TimeoutError"]


async def test_stop_on_failure_ends_the_loop_after_logging() -> None:
    runs = Runs(failing={2})
    with capture_logs() as logs:
        await asyncio.wait_for(
            every(0.01, runs, event="test.failed", stop_on_failure=True), timeout=15
        )
    assert len(runs.at) == 2
    assert [entry["event"] for entry in logs] == ["test.failed"]


# -- cancellation ------------------------------------------------------------------------


async def test_cancelling_during_the_wait_stops_it_quietly() -> None:
    runs = Runs()
    with capture_logs() as logs:
        task = asyncio.create_task(every(3600, runs, event="test.failed"))
        await asyncio.sleep(0)  # it is waiting now
        await _stopped(task)
    assert runs.at == []
    assert logs == []


async def test_cancelling_during_a_run_stops_it_and_is_no_failure() -> None:
    entered = asyncio.Event()

    async def stuck() -> None:
        entered.set()
        await asyncio.Event().wait()

    with capture_logs() as logs:
        task = asyncio.create_task(every(3600, stuck, event="test.failed", first_delay=0))
        await asyncio.wait_for(entered.wait(), timeout=15)
        await _stopped(task)
    assert logs == []
