"""Concurrent calls share one run; each caller gets its own result or the run's error."""

from __future__ import annotations

import asyncio

import pytest

from mailroom.coalescer import Coalescer


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.runs: list[list[int]] = []
        self.fail = fail

    async def run(self, items: list[int]) -> list[int]:
        self.runs.append(items)
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("database away")
        return [i * 10 for i in items]


async def test_calls_made_together_share_one_run_and_each_gets_its_result() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, max_items=100)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.runs == [[0, 1, 2, 3, 4]]


async def test_a_run_takes_at_most_max_items() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, max_items=2)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.runs == [[0, 1], [2, 3], [4]]


async def test_calls_one_after_another_each_run_at_once() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, max_items=100)
    assert await coalescer.submit(1) == 10
    assert await coalescer.submit(2) == 20
    assert recorder.runs == [[1], [2]]


async def test_a_failed_run_raises_in_every_caller_and_the_next_call_runs_again() -> None:
    recorder = Recorder(fail=True)
    coalescer = Coalescer(recorder.run, max_items=100)
    outcomes = await asyncio.gather(
        *(coalescer.submit(i) for i in range(3)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [RuntimeError] * 3
    recorder.fail = False
    assert await coalescer.submit(7) == 70


async def test_a_cancelled_caller_does_not_stop_the_run_for_the_others() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        started.set()
        await release.wait()
        return items

    coalescer = Coalescer(slow, max_items=100)
    first = asyncio.ensure_future(coalescer.submit(1))
    second = asyncio.ensure_future(coalescer.submit(2))
    await started.wait()
    first.cancel()
    release.set()
    assert await second == 2
    with pytest.raises(asyncio.CancelledError):
        await first


# -- serial: one run at a time; what arrives meanwhile shares the next ---------------------


async def test_serial_calls_arriving_during_a_run_share_the_next_one() -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    runs: list[list[int]] = []

    async def held(items: list[int]) -> list[int]:
        runs.append(items)
        if len(runs) == 1:
            started.set()
            await release.wait()
        return [i * 10 for i in items]

    coalescer = Coalescer(held, max_items=100, serial=True)
    first = asyncio.ensure_future(coalescer.submit(1))
    await started.wait()
    # Each of these arrives in a turn of its own, while the first run is held.
    later = []
    for i in (2, 3, 4):
        later.append(asyncio.ensure_future(coalescer.submit(i)))
        await asyncio.sleep(0)
    assert runs == [[1]]  # nothing runs alongside the first
    release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert runs == [[1], [2, 3, 4]]


async def test_serial_a_failed_run_does_not_stop_the_next() -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    runs: list[list[int]] = []

    async def first_fails(items: list[int]) -> list[int]:
        runs.append(items)
        if len(runs) == 1:
            started.set()
            await release.wait()
            raise RuntimeError("database away")
        return [i * 10 for i in items]

    coalescer = Coalescer(first_fails, max_items=100, serial=True)
    failing = asyncio.ensure_future(coalescer.submit(1))
    await started.wait()
    queued = asyncio.ensure_future(coalescer.submit(2))
    release.set()
    with pytest.raises(RuntimeError):
        await failing
    assert await queued == 20
    assert await coalescer.submit(3) == 30
    assert runs == [[1], [2], [3]]


async def test_serial_runs_take_at_most_max_items_one_after_another() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run, max_items=2, serial=True)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.runs == [[0, 1], [2, 3], [4]]
