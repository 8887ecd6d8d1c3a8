"""Suppressions and feedback: what the suppression check costs POST /send with a list of
SUPPRESSED_ROWS addresses, and how many provider events one API process takes per second.

In one stack run (no worker): POST /send for INGEST_SECONDS with the list empty, then
again with SUPPRESSED_ROWS suppressions loaded (the requests' recipients are never on it,
so every email still goes through); the difference of the two p99s is what the list's
size adds. The check itself (the one indexed query, as the send path makes it) is then
timed alone, CHECK_SAMPLES times. Last, wrk posts Brevo hard-bounce events for
FEEDBACK_SECONDS to POST /feedback/brevo, each naming one of FEEDBACK_EMAILS sent emails.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.db import connect, service_url
from harness.procs import Process

from bench.config import HTTP_CONNECTIONS, INGEST_SECONDS, TUNED, WRK_THREADS
from bench.stack import BenchStack
from bench.wrk import EXIT_TIMEOUT_S, WrkResult, parse, run_for

SUPPRESSED_ROWS = 1_000_000
CHECK_SAMPLES = 5_000
FEEDBACK_EMAILS = 50_000
FEEDBACK_SECONDS = 15
FEEDBACK_BATCH = 20  # events per request in the batched pass (Brevo's batched webhooks)
FEEDBACK_TOKEN = "bench-feedback-token"  # noqa: S105  (a throwaway run's, not a secret)
SCRIPT = Path(__file__).with_name("feedback.lua")

LOAD_SUPPRESSIONS = """
INSERT INTO suppressions (project_id, address, reason, created_at)
SELECT (SELECT id FROM projects WHERE name = 'default'),
       'suppressed-' || g || '@example.com', 'hard_bounce', now()
FROM generate_series(1, $1::bigint) AS g
"""
LOAD_SENT = """
INSERT INTO emails (
    id, project_id, sender, to_addrs, recipients, subject, message_id, status, attempts,
    created_at, updated_at, sent_at
)
SELECT gen_random_uuid(), (SELECT id FROM projects WHERE name = 'default'),
       'no-reply@example.com', ARRAY['user-' || g || '@example.com'],
       ARRAY['user-' || g || '@example.com'], 'feedback bench',
       '<fb-' || g || '@bench.example.com>', 'sent', 1, now(), now(), now()
FROM generate_series(1, $1::bigint) AS g
"""


@dataclass
class SuppressionsResult:
    rows: int = SUPPRESSED_ROWS
    empty: WrkResult | None = None
    full: WrkResult | None = None
    check_p50_ms: float = 0.0
    check_p99_ms: float = 0.0
    feedback: WrkResult | None = None
    feedback_batched: WrkResult | None = None
    feedback_recorded: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def added_p99_ms(self) -> float:
        if self.empty is None or self.full is None:
            return 0.0
        return self.full.p99_ms - self.empty.p99_ms


async def _execute(db_name: str, sql: str, *args: object) -> None:
    conn = await connect(db_name)
    try:
        await conn.execute(sql, *args)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _count(db_name: str, sql: str) -> int:
    conn = await connect(db_name)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


async def _time_check(db_name: str) -> tuple[float, float]:
    """The send path's lookup, as it makes it (mailroom.suppressions.service.suppressed)."""
    from mailroom.db.engine import create_engine, create_session_factory
    from mailroom.projects.models import DEFAULT_PROJECT_ID
    from mailroom.settings import load_settings
    from mailroom.suppressions import service

    settings = load_settings(_env_file=None, database_url=service_url(db_name))
    engine = create_engine(settings, pool_size=2)
    sessions = create_session_factory(engine)
    samples: list[float] = []
    try:
        for n in range(CHECK_SAMPLES):
            recipients = [f"user-{n}@example.com", f"suppressed-{n * 197 + 1}@example.com"]
            began = time.perf_counter()
            async with sessions() as session:
                found = await service.suppressed(
                    session, settings, DEFAULT_PROJECT_ID, recipients, datetime.now(UTC)
                )
            samples.append((time.perf_counter() - began) * 1000)
            if len(found) != 1:
                raise RuntimeError(f"the check found {found} among {recipients}")
    finally:
        await engine.dispose()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def _post_feedback(wrk: str, api_url: str, workdir: Path, batch: int) -> WrkResult:
    env = dict(os.environ)
    env.update(
        {
            "BENCH_EMAILS": str(FEEDBACK_EMAILS),
            "BENCH_TOKEN": FEEDBACK_TOKEN,
            "BENCH_BATCH": str(batch),
            "BENCH_PASS": str(batch),
        }
    )
    argv = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{HTTP_CONNECTIONS}",
        f"-d{FEEDBACK_SECONDS}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(SCRIPT),
        api_url,
    ]
    log = workdir / f"wrk-feedback-{batch}-{uuid.uuid4().hex[:6]}.log"
    proc = Process("wrk-feedback", argv, env, log)
    proc.start()
    deadline = time.monotonic() + FEEDBACK_SECONDS + EXIT_TIMEOUT_S
    while proc.alive and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.stop(timeout=5)
    return parse(proc.log.read_text(encoding="utf-8", errors="replace"))


def _dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_suppressions(stack: BenchStack, wrk: str) -> SuppressionsResult:
    result = SuppressionsResult()
    settings = {**TUNED, "FEEDBACK_BREVO_TOKEN": FEEDBACK_TOKEN}
    with stack.run("suppressions", workers=0, settings=settings) as run:
        workdir = run.api.log.parent
        # Each wrk run in a directory of its own: its log is where its figures are read.
        result.empty = run_for(
            wrk, run.api_url, run.api_key, _dir(workdir, "empty"), INGEST_SECONDS
        )
        began = time.monotonic()
        asyncio.run(_execute(run.db_name, LOAD_SUPPRESSIONS, SUPPRESSED_ROWS))
        print(f"   loaded {SUPPRESSED_ROWS:,} suppressions in {time.monotonic() - began:.0f} s")
        result.full = run_for(wrk, run.api_url, run.api_key, _dir(workdir, "full"), INGEST_SECONDS)
        result.check_p50_ms, result.check_p99_ms = asyncio.run(_time_check(run.db_name))
        asyncio.run(_execute(run.db_name, LOAD_SENT, FEEDBACK_EMAILS))
        result.feedback = _post_feedback(wrk, run.api_url, workdir, 1)
        result.feedback_batched = _post_feedback(wrk, run.api_url, workdir, FEEDBACK_BATCH)
        result.feedback_recorded = asyncio.run(
            _count(run.db_name, "SELECT count(*) FROM delivery_feedback")
        )
    runs = (
        ("send", result.empty),
        ("send", result.full),
        ("feedback", result.feedback),
        ("feedback batched", result.feedback_batched),
    )
    for name, w in runs:
        if w is not None and (w.non_2xx or w.socket_errors):
            result.problems.append(f"{name}: {w.non_2xx} non-2xx, {w.socket_errors} socket errors")
    answered = (result.feedback.accepted if result.feedback else 0) + (
        result.feedback_batched.accepted * FEEDBACK_BATCH if result.feedback_batched else 0
    )
    # wrk stops mid-flight: up to one request per connection may be recorded unanswered.
    if result.feedback_recorded < answered:
        result.problems.append(
            f"{answered} events answered 200, {result.feedback_recorded} recorded"
        )
    return result
