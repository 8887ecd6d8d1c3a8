"""Many concurrent small calls made as one.

Hand-written: no kept library joins concurrent awaits into one run without waiting on a
timer; what the batching gains is measured in BENCHMARKS.md (group commit, batch claims).

A worker runs dozens of single-email jobs at once, and each wants a short
transaction to claim its email and another to record its attempt; the API serves
dozens of POST /send at once, each with an insert and a BullMQ add. Each
transaction costs a BEGIN and a COMMIT round trip and a pass through the ORM, and
each add a Redis round trip and a script call, which, per email, cost more than
the work itself. Calls that arrive while a run is pending join it: one
transaction (or one addBulk) serves all of them, and each caller gets its own
part of the result. Under light load a call runs at once (after one turn of the
event loop), so nothing waits on a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - item
O = TypeVar("O")  # noqa: E741 - its result

Run = Callable[[list[I]], Awaitable[Sequence[O]]]


class Coalescer(Generic[I, O]):
    """Calls made in the same turn of the event loop share a run.

    ``serial``: at most one run at a time, and the calls made while it runs share the
    next one (group commit). For calls that arrive one by one, a turn apart, this
    still batches them, where the default would give each its own concurrent run.
    """

    def __init__(self, run: Run[I, O], *, max_items: int, serial: bool = False) -> None:
        self._run = run
        self._max = max_items
        self._serial = serial
        self._running = False
        self._pending: list[tuple[I, asyncio.Future[O]]] = []
        self._scheduled = False

    async def submit(self, item: I) -> O:
        """``run([item, …others…])``'s result for ``item``; its exception if the run failed."""
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        return await future

    def _start(self) -> None:
        # Called once the jobs woken in the same turn of the loop have all submitted.
        self._scheduled = False
        if self._serial:
            if not self._running and self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                self._running = True
                task = asyncio.get_running_loop().create_task(self._flush(batch))
                task.add_done_callback(self._next)
            return
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            task.add_done_callback(_consume)

    async def _flush(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _next(self, task: asyncio.Task[None]) -> None:
        _consume(task)
        self._running = False
        self._start()


def _consume(task: asyncio.Task[None]) -> None:
    # Failures were handed to every caller; nothing is left to report here.
    if not task.cancelled():
        task.exception()
