"""End-to-end delivery: N emails in through the API, out through the workers to smtp-sink.

The clock starts just before the first request and stops at the last email's `sent_at` in
the database (read by polling the emails table), so the figure is the rate at which the
whole pipeline turns requests into delivered emails, submission and delivery overlapping
as they would in service. At the default settings single requests go through a client
that waits out each 429 (the one key's limit) and sends the email again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
from harness.db import connect

from bench import db
from bench.config import (
    BATCH_CLIENTS,
    BATCH_SIZE,
    DB_POLL_S,
    DEFAULTS_SINGLE_CLIENTS,
    E2E_DEADLINE_S,
    PROFILES,
    WRK_THREADS,
)
from bench.stack import BenchStack, Run
from bench.wrk import COUNTED_RUN_CEILING_S, Wrk, WrkResult

SUBMIT_GRACE_S = 30.0  # after the deadline, for the submission to notice and stop


@dataclass
class E2EResult:
    mode: str  # "single" or "batch"
    workers: int
    emails: int
    profile: str = "tuned"  # or "defaults" (bench.config)
    accepted: int = 0
    limited: int = 0  # 429 answers, each waited out and sent again (defaults only)
    stored: int = 0
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0  # first request -> last sent_at (or -> the deadline)
    ingest_seconds: float = 0.0  # first request -> last created_at
    sent_during_ingest: int = 0  # sent by the time the last email was stored
    complete: bool = False
    timed_out: bool = False  # E2E_DEADLINE_S passed before every email was sent
    skipped: str | None = None
    rss_mb: dict[str, float] = field(default_factory=dict)
    http: dict[str, int] = field(default_factory=dict)  # answers by status code
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        name = f"e2e {self.mode}, {self.workers} worker{'s' if self.workers > 1 else ''}"
        return f"defaults: {name}" if self.profile == "defaults" else name

    @property
    def emails_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def undelivered(self) -> str | None:
        """What makes this run a failure of the bench (not a slow figure), if anything:
        an email that was not sent by the deadline, or failed."""
        if self.skipped:
            return None
        if self.complete and self.sent >= self.emails:
            return None
        failed = f", {self.failed:,} failed" if self.failed else ""
        return f"incomplete: {self.sent:,} of {self.emails:,} emails sent by the deadline{failed}"

    @property
    def ingest_per_s(self) -> float:
        return self.stored / self.ingest_seconds if self.ingest_seconds > 0 else 0.0

    @property
    def drain_per_s(self) -> float:
        """Delivery rate once all emails were stored (the API idle): the workers alone."""
        left = self.sent - self.sent_during_ingest
        drain = self.seconds - self.ingest_seconds
        return left / drain if left > 0 and drain > 0 else 0.0


# -- submission -----------------------------------------------------------------------


async def _submit_single(wrk: Wrk, result: E2EResult, stored: asyncio.Event) -> None:
    """Wait for every wrk thread to have its answers (or for all N emails to be in the
    database, should an answer have been lost), then collect wrk's summary."""
    # wrk reports through files, which no asyncio.Event can wait on: poll them.
    while wrk.alive and wrk.threads_done < WRK_THREADS and not stored.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    summary: WrkResult = await asyncio.to_thread(wrk.finish)
    result.accepted = summary.accepted
    result.http = {"202": summary.accepted, "non-2xx": summary.non_2xx}
    if summary.socket_errors:
        result.http["socket errors"] = summary.socket_errors


async def _submit_polite(client: httpx.AsyncClient, result: E2EResult) -> None:
    """POST /send once per email from DEFAULTS_SINGLE_CLIENTS clients, each waiting out a
    429's Retry-After and sending the same email again, as a well-behaved client does."""
    numbers = iter(range(result.emails))
    statuses: Counter[str] = Counter()

    async def send(n: int) -> None:
        body = {"to": f"user-d{n}@example.com", "subject": "bench", "text": "hello"}
        while True:
            try:
                response = await client.post("/send", json=body)
            except httpx.HTTPError as exc:
                statuses["no answer"] += 1
                result.problems.append(f"request failed: {exc!r}")
                return
            statuses[str(response.status_code)] += 1
            if response.status_code == 429:
                result.limited += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code == 202:
                result.accepted += 1
            elif len(result.problems) < 10:
                result.problems.append(f"send: {response.status_code} {response.text[:200]}")
            return

    async def sender() -> None:
        for n in numbers:
            await send(n)

    await asyncio.gather(*(sender() for _ in range(DEFAULTS_SINGLE_CLIENTS)))
    result.http = dict(statuses)


def _batch_bodies(n: int) -> list[bytes]:
    """The request bodies, serialised before the clock starts."""
    bodies = []
    for start in range(0, n, BATCH_SIZE):
        emails = [
            {"to": f"user-b{i}@example.com", "subject": "bench", "text": "hello"}
            for i in range(start, min(start + BATCH_SIZE, n))
        ]
        bodies.append(json.dumps({"emails": emails}).encode())
    return bodies


async def batch_endpoint_missing(client: httpx.AsyncClient) -> bool:
    """An empty batch creates nothing: a 404 or 405 means there is no such endpoint."""
    response = await client.post("/send/batch", json={"emails": []})
    return response.status_code in (404, 405)


async def _submit_batches(
    client: httpx.AsyncClient, bodies: list[bytes], result: E2EResult
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    statuses: Counter[str] = Counter()

    async def sender() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            try:
                response = await client.post("/send/batch", content=body)
            except httpx.HTTPError as exc:
                statuses["no answer"] += 1
                result.problems.append(f"batch request failed: {exc!r}")
                continue
            statuses[str(response.status_code)] += 1
            if response.status_code == 202:
                answer = response.json()
                result.accepted += int(answer.get("accepted", 0))
                if answer.get("rejected"):
                    result.problems.append(f"batch rejected {answer['rejected']} emails")
            elif len(result.problems) < 10:
                result.problems.append(f"batch: {response.status_code} {response.text[:200]}")

    await asyncio.gather(*(sender() for _ in range(BATCH_CLIENTS)))
    result.http = dict(statuses)


# -- waiting for delivery ---------------------------------------------------------------


async def _wait_delivered(
    conn: asyncpg.Connection,
    result: E2EResult,
    started: float,
    submission: asyncio.Task[None],
    stored: asyncio.Event,
) -> None:
    """Poll the emails table until all N are stored and sent or failed, or the deadline."""
    deadline = started + E2E_DEADLINE_S
    while True:
        progress = await db.progress(conn)
        submitted = submission.done()
        settled = progress.sent + progress.failed
        if progress.total >= result.emails:
            stored.set()
        if progress.total == result.emails and settled == progress.total:
            result.complete = True
            break
        if submitted and (submission.exception() is not None or settled == progress.total):
            break  # nothing more is coming: some requests were refused
        if time.time() >= deadline:
            result.timed_out = True  # a slow figure, reported as such: not a fault
            break
        await asyncio.sleep(DB_POLL_S)
    result.stored, result.sent, result.failed = progress.total, progress.sent, progress.failed
    if result.complete and progress.last_sent is not None:
        result.seconds = progress.last_sent.timestamp() - started
    else:
        result.seconds = time.time() - started
    if progress.last_created is not None:
        result.ingest_seconds = progress.last_created.timestamp() - started
        result.sent_during_ingest = await conn.fetchval(
            "SELECT count(*) FROM emails WHERE sent_at <= $1", progress.last_created
        )


async def _end_submission(
    submission: asyncio.Task[None], wrk: Wrk | None, result: E2EResult
) -> None:
    """Stop a submission still running (past the deadline, or stuck) and note its error."""
    if not submission.done():
        if wrk is not None:
            wrk.stop()
        submission.cancel()
    await asyncio.wait({submission}, timeout=SUBMIT_GRACE_S)
    if submission.done() and not submission.cancelled() and submission.exception() is not None:
        result.problems.append(f"submission: {submission.exception()!r}")


async def measure(run: Run, result: E2EResult, wrk_path: str) -> None:
    conn = await connect(run.db_name)
    headers = {"Authorization": f"Bearer {run.api_key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=max(BATCH_CLIENTS, DEFAULTS_SINGLE_CLIENTS) + 1)
    wrk: Wrk | None = None
    stored = asyncio.Event()
    try:
        async with httpx.AsyncClient(
            base_url=run.api_url, headers=headers, limits=limits, timeout=120.0
        ) as client:
            if result.mode == "batch":
                if await batch_endpoint_missing(client):
                    result.skipped = "skipped: batch endpoint missing"
                    return
                bodies = _batch_bodies(result.emails)
                started = time.time()
                submission = asyncio.create_task(_submit_batches(client, bodies, result))
            elif result.profile == "defaults":
                started = time.time()
                submission = asyncio.create_task(_submit_polite(client, result))
            else:
                workdir = run.api.log.parent
                wrk = Wrk(wrk_path, run.api_url, run.api_key, workdir)
                started = time.time()
                wrk.start(total=result.emails, duration_s=COUNTED_RUN_CEILING_S)
                submission = asyncio.create_task(_submit_single(wrk, result, stored))
            try:
                await _wait_delivered(conn, result, started, submission, stored)
                stored.set()
                if result.complete:
                    # Every email is in: the submission only has its summary to collect.
                    await asyncio.wait({submission}, timeout=SUBMIT_GRACE_S)
            finally:
                await _end_submission(submission, wrk, result)
    finally:
        if wrk is not None:
            wrk.stop()
        await conn.close()
    if not result.timed_out:  # else the submission was cut short and its counts are partial
        if result.accepted != result.emails:
            result.problems.append(f"{result.accepted} of {result.emails} requests accepted")
        if result.stored != result.emails:
            result.problems.append(f"{result.stored} emails stored, {result.emails} expected")
    if result.failed:
        result.problems.append(f"{result.failed} emails failed")


def run_e2e(
    stack: BenchStack,
    mode: str,
    workers: int,
    emails: int,
    wrk_path: str,
    *,
    profile: str = "tuned",
) -> E2EResult:
    result = E2EResult(mode=mode, workers=workers, emails=emails, profile=profile)
    name = f"e2e-{mode}-{workers}w-{profile}"
    with stack.run(name, workers=workers, settings=PROFILES[profile]) as run:
        asyncio.run(measure(run, result, wrk_path))
    result.rss_mb = dict(run.rss_mb)
    return result
