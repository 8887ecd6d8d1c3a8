"""The scenarios: each a sink script, the subjects to send, a fault, and extra checks."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from chaos.checks import Row, attempt_counts, first_attempts
from chaos.load import LoadResult
from chaos.stack import CONCURRENCY, SMTP_TIMEOUT, WORKERS, ChaosStack, SinkScript

DEFER_MARKER = "chaos-defer"
REJECT_MARKER = "chaos-reject"
SLOW_MARKER = "chaos-slow"
LATE_MARKER = "chaos-late"
SLOW_DELAY = 8.0
IN_FLIGHT = WORKERS * CONCURRENCY  # sends all workers may have in flight at once


@dataclass
class FaultLog:
    """What the fault did, and when (time.time()) it last did something."""

    kills: int = 0
    last_fault: float = 0.0
    notes: list[str] = field(default_factory=list)
    # A kill whose recovery is measured: when, the emails the worker held, and the bound.
    killed_at: float | None = None
    held_at_kill: list[str] = field(default_factory=list)
    recovery_bound: float | None = None

    def mark(self, note: str) -> None:
        self.last_fault = time.time()
        self.notes.append(f"{time.strftime('%H:%M:%S')} {note}")


async def until_progress(load: LoadResult, total: int, fraction: float) -> None:
    """Wait until `fraction` of the emails have been answered by the API."""
    while load.answered < total * fraction:  # noqa: ASYNC110 - a counter, polled
        await asyncio.sleep(0.05)


Fault = Callable[[ChaosStack, LoadResult, int, random.Random, FaultLog], Coroutine[Any, Any, None]]
DuplicateBound = Callable[[FaultLog, dict[str, str]], int]
Check = Callable[[ChaosStack, dict[str, str], dict[str, Row]], Coroutine[Any, Any, list[str]]]


async def _no_checks(
    stack: ChaosStack, accepted: dict[str, str], rows: dict[str, Row]
) -> list[str]:
    return []


@dataclass
class Scenario:
    name: str
    description: str
    fault: Fault
    sink: SinkScript = field(default_factory=SinkScript)
    subject_for: Callable[[int], str] = lambda i: f"chaos {i}"
    expect_failed: Callable[[str], bool] = lambda subject: False
    check: Check = _no_checks
    # Duplicate copies the fault may explain (from what it did and the emails accepted),
    # and why; more fails the scenario.
    duplicate_bound: DuplicateBound = lambda faults, accepted: 0
    bound_reason: str = "nothing in this fault can send an email twice"
    # API answers other than 202 that the fault explains (anything else fails the scenario).
    allowed_refusals: frozenset[int] = frozenset()
    pg_proxy: bool = False  # API and workers reach PostgreSQL through chaos.pgproxy
    retry_503: bool = False  # the load client waits out a 503's Retry-After and sends again
    settings: dict[str, str] = field(default_factory=dict)  # over chaos.stack.settings


# -- kill9 ------------------------------------------------------------------------------

KILLS = 5


async def kill9(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    await until_progress(load, n, 0.1)
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        worker = rng.choice(stack.workers)
        await asyncio.to_thread(worker.kill9)
        log.kills += 1
        log.mark(f"kill -9 {worker.name}")
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        await asyncio.to_thread(worker.start)
        log.notes.append(f"{time.strftime('%H:%M:%S')} restarted {worker.name} (pid {worker.pid})")


# -- worker-kill: recovery measured ----------------------------------------------------

RECOVERY_BOUND = 30.0  # seconds from the kill until the killed worker's emails are sent


async def _held_by(database_url: str, pid: int) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        records = await conn.fetch(
            "SELECT e.id FROM emails e JOIN workers w ON w.id = e.worker_id"
            " WHERE e.status = 'sending' AND w.pid = $1",
            pid,
        )
    finally:
        await conn.close()
    return [str(r["id"]) for r in records]


async def worker_kill(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    await until_progress(load, n, 0.3)
    worker = rng.choice(stack.workers)
    assert worker.pid is not None
    held: list[str] = []
    for _ in range(100):  # until the worker holds some emails (a few seconds at most)
        held = await _held_by(stack.plain_database_url, worker.pid)
        if held:
            break
        await asyncio.sleep(0.05)
    await asyncio.to_thread(worker.kill9)
    log.killed_at = time.time()
    log.kills += 1
    log.mark(f"kill -9 {worker.name} holding {len(held)} emails in `sending`")
    # What it held then cannot change until another worker takes it over.
    log.held_at_kill = await _held_by(stack.plain_database_url, worker.pid)
    log.recovery_bound = RECOVERY_BOUND
    await asyncio.sleep(1.0)  # as a supervisor would, restart it (a new registry row)
    await asyncio.to_thread(worker.start)
    log.notes.append(f"{time.strftime('%H:%M:%S')} restarted {worker.name} (pid {worker.pid})")


# -- Redis ------------------------------------------------------------------------------


async def redis_flush(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    await until_progress(load, n, rng.uniform(0.3, 0.6))
    await asyncio.to_thread(stack.redis_cli, "FLUSHALL")
    log.mark("FLUSHALL")


async def redis_restart(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    await until_progress(load, n, rng.uniform(0.3, 0.5))
    assert stack.redis is not None
    await asyncio.to_thread(stack.redis.kill9)
    log.mark("redis killed")
    await asyncio.sleep(4)
    await asyncio.to_thread(stack.start_redis)
    log.mark("redis restarted (empty)")


# -- SMTP -------------------------------------------------------------------------------

SMTP_OUTAGE = 30.0


async def smtp_down(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    await until_progress(load, n, rng.uniform(0.2, 0.4))
    assert stack.sink is not None
    await asyncio.to_thread(stack.sink.stop, 10)
    log.mark("sink stopped")
    await asyncio.sleep(SMTP_OUTAGE)
    await asyncio.to_thread(stack.start_sink)
    log.mark("sink restarted")


async def smtp_codes(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    log.mark("sink scripted from the start")


def _codes_subject(i: int) -> str:
    if i % 10 == 0:
        return f"{DEFER_MARKER} {i}"
    if i % 10 == 1:
        return f"{REJECT_MARKER} {i}"
    return f"chaos {i}"


async def _codes_check(
    stack: ChaosStack, accepted: dict[str, str], rows: dict[str, Row]
) -> list[str]:
    attempts = await attempt_counts(stack.plain_database_url)
    problems: list[str] = []
    for email_id, subject in accepted.items():
        row = rows.get(email_id)
        count, codes = attempts.get(email_id, (0, []))
        if DEFER_MARKER in subject and (
            row is None or row.status != "sent" or count != 3 or codes != [451, 451, 250]
        ):
            problems.append(f"{email_id} ({subject}): {row and row.status}, attempts {codes}")
        if REJECT_MARKER in subject and (
            row is None or row.status != "failed" or count != 1 or codes != [550]
        ):
            problems.append(f"{email_id} ({subject}): {row and row.status}, attempts {codes}")
    return problems


async def smtp_slow(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    log.mark(f"sink answers 10% of first attempts after {SLOW_DELAY:.0f} s, from the start")


def _slow_subject(i: int) -> str:
    return f"{SLOW_MARKER} {i}" if i % 10 == 0 else f"chaos {i}"


async def _slow_check(
    stack: ChaosStack, accepted: dict[str, str], rows: dict[str, Row]
) -> list[str]:
    firsts = await first_attempts(stack.plain_database_url)
    low, high = (SMTP_TIMEOUT - 1) * 1000, (SMTP_TIMEOUT + 2) * 1000
    problems: list[str] = []
    for email_id, subject in accepted.items():
        if SLOW_MARKER not in subject:
            continue
        row, first = rows.get(email_id), firsts.get(email_id)
        if (
            row is None
            or row.status != "sent"
            or row.attempts < 2
            or first is None
            or first.outcome != "unknown"
            or first.smtp_code is not None
            or "timed out" not in first.message.lower()
            or not low <= first.duration_ms <= high
        ):
            problems.append(f"{email_id} ({subject}): {row and row.status}, first attempt {first}")
    return problems


async def smtp_late(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    log.mark(f"sink answers 10% of first attempts 250 after {SLOW_DELAY:.0f} s, from the start")


def _late_subject(i: int) -> str:
    return f"{LATE_MARKER} {i}" if i % 10 == 0 else f"chaos {i}"


async def _late_check(
    stack: ChaosStack, accepted: dict[str, str], rows: dict[str, Row]
) -> list[str]:
    """Each late email: first attempt `unknown` (timed out), then sent by a retry."""
    firsts = await first_attempts(stack.plain_database_url)
    problems: list[str] = []
    for email_id, subject in accepted.items():
        if LATE_MARKER not in subject:
            continue
        row, first = rows.get(email_id), firsts.get(email_id)
        if row is None or row.status != "sent" or first is None or first.outcome != "unknown":
            problems.append(f"{email_id} ({subject}): {row and row.status}, first attempt {first}")
    return problems


# -- PostgreSQL -------------------------------------------------------------------------

PG_OUTAGE = 10.0


async def postgres_down(
    stack: ChaosStack, load: LoadResult, n: int, rng: random.Random, log: FaultLog
) -> None:
    await until_progress(load, n, rng.uniform(0.3, 0.5))
    await asyncio.to_thread(stack.cut_pg_proxy)
    log.mark("postgres proxy cut (listener closed, connections aborted)")
    await asyncio.sleep(PG_OUTAGE)
    await asyncio.to_thread(stack.restore_pg_proxy)
    log.mark("postgres proxy listening again")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "kill9",
            f"kill -9 a random worker {KILLS} times during delivery, restarting it each time",
            kill9,
            sink=SinkScript(delay=0.3),
            duplicate_bound=lambda faults, accepted: faults.kills * CONCURRENCY,
            bound_reason="kills x worker concurrency: what the killed workers had in flight",
        ),
        Scenario(
            "worker-kill",
            f"kill -9 a worker holding emails once; all it held sent within {RECOVERY_BOUND:.0f} s",
            worker_kill,
            sink=SinkScript(delay=0.3),
            duplicate_bound=lambda faults, accepted: faults.kills * CONCURRENCY,
            bound_reason="worker concurrency: what the killed worker had in flight",
            # The default lease: only the worker registry's takeover can meet the bound.
            settings={"SENDING_LEASE": "300"},
        ),
        Scenario("redis-flush", "FLUSHALL the harness Redis mid-run", redis_flush),
        Scenario(
            "redis-restart",
            "kill -9 the harness Redis, restart it empty 4 s later",
            redis_restart,
            # The rate limiter fails open; a request can still meet the dead Redis.
            allowed_refusals=frozenset({503}),
        ),
        Scenario(
            "smtp-down",
            f"stop the SMTP sink for {SMTP_OUTAGE:.0f} s mid-run, restart it",
            smtp_down,
            duplicate_bound=lambda faults, accepted: IN_FLIGHT,
            bound_reason="sends in flight when the sink stopped (kept, connection cut before 250)",
        ),
        Scenario(
            "smtp-codes",
            "sink answers 451 twice then 250 to 10% of emails, 550 to another 10%",
            smtp_codes,
            sink=SinkScript(
                fail_first=2,
                code=451,
                fail_marker=DEFER_MARKER,
                reject_code=550,
                reject_marker=REJECT_MARKER,
            ),
            subject_for=_codes_subject,
            expect_failed=lambda subject: REJECT_MARKER in subject,
            check=_codes_check,
        ),
        Scenario(
            "smtp-slow",
            f"sink slower than SMTP_TIMEOUT ({SMTP_TIMEOUT:.0f} s) on 10% of first attempts",
            smtp_slow,
            sink=SinkScript(slow_marker=SLOW_MARKER, slow_first=1, slow_delay=SLOW_DELAY),
            subject_for=_slow_subject,
            check=_slow_check,
        ),
        Scenario(
            "smtp-late",
            f"sink keeps 10% of first attempts but answers 250 after {SLOW_DELAY:.0f} s,"
            f" past SMTP_TIMEOUT ({SMTP_TIMEOUT:.0f} s)",
            smtp_late,
            sink=SinkScript(late_marker=LATE_MARKER, late_first=1, late_delay=SLOW_DELAY),
            subject_for=_late_subject,
            check=_late_check,
            duplicate_bound=lambda faults, accepted: sum(
                1 for subject in accepted.values() if LATE_MARKER in subject
            ),
            bound_reason="one extra copy per email accepted after the client's timeout",
        ),
        Scenario(
            "postgres-down",
            f"cut the PostgreSQL proxy (listener and every connection) for {PG_OUTAGE:.0f} s",
            postgres_down,
            pg_proxy=True,
            retry_503=True,
            allowed_refusals=frozenset({503}),
            duplicate_bound=lambda faults, accepted: IN_FLIGHT,
            bound_reason="answers in flight whose record could not reach PostgreSQL",
        ),
    ]
}

__all__ = ["CONCURRENCY", "SCENARIOS", "FaultLog", "Scenario"]
