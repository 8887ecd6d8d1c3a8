"""Periodic work: every background loop of the API and the worker runs through ``every``.

Counters fold, retention purge, the sweeper, the worker's heartbeat and lease renewal all
wait, run, log a failure and go on in the same way:

- the wait is the interval with ±``JITTER`` of it at random, so that processes started
  together (every API and worker process folds the counters) do not hit the database in
  step; it is measured from the end of one run to the start of the next;
- a failure is logged as ``event`` (a warning with ``error`` and ``failures``, the
  count in a row) and the loop carries on; during a long outage it is logged once every
  ``REPEAT_LOG_AFTER`` seconds, not at every run;
- cancelling the task stops it at once, mid-wait or mid-run; a cancellation is never
  logged as a failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

JITTER = 0.1  # a wait is between 0.9 and 1.1 times the interval
REPEAT_LOG_AFTER = 60.0  # seconds between two log lines of one run of failures
_MAX_ERROR = 300  # characters of an error message kept in the log


@dataclass(frozen=True)
class RunAgainIn:
    """What a run returns to set the wait before the next one, instead of the interval."""

    seconds: float


def jittered(seconds: float, rng: random.Random, jitter: float = JITTER) -> float:
    """``seconds`` moved by up to ``jitter`` of itself, either way."""
    return seconds * rng.uniform(1 - jitter, 1 + jitter)


async def every(
    interval: float,
    work: Callable[[], Awaitable[object]],
    *,
    event: str,
    first_delay: float | None = None,
    jitter: float = JITTER,
    while_: Callable[[], bool] | None = None,
    stop_on_failure: bool = False,
    log_fields: Mapping[str, object] | None = None,
    rng: random.Random | None = None,
) -> None:
    """Run ``work`` every ``interval`` seconds until cancelled.

    ``work`` may return a ``RunAgainIn`` to run again sooner or later than ``interval``
    (anything else it returns is ignored). ``first_delay`` is the wait before the first
    run (the interval by default; 0 runs at once). ``while_``, when given, is asked
    before each run, and the loop returns once it says no. ``stop_on_failure`` ends the
    loop after logging its first failure, for faults that will not go away by themselves.
    """
    rng = rng or random.Random()
    fields = dict(log_fields or {})
    delay = interval if first_delay is None else first_delay
    failures = 0
    logged_at = 0.0
    while True:
        if delay > 0:
            await asyncio.sleep(jittered(delay, rng, jitter))
        if while_ is not None and not while_():
            return
        try:
            done = await work()
        except Exception as exc:  # noqa: BLE001 - the next run may succeed; log and go on
            failures += 1
            now = time.monotonic()
            if failures == 1 or now - logged_at >= REPEAT_LOG_AFTER:
                logged_at = now
                error = (str(exc) or type(exc).__name__)[:_MAX_ERROR]
                log.warning(event, error=error, failures=failures, **fields)
            if stop_on_failure:
                return
            delay = interval
        else:
            failures = 0
            delay = done.seconds if isinstance(done, RunAgainIn) else interval
