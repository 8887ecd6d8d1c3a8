"""Webhooks under load: the e2e batch run with one endpoint subscribed to every event.

Three runs of the same batch submission, each on a fresh stack: without webhooks (the
baseline), with a fast local receiver (answers 200 at once), and with a receiver that
sleeps 10 s before each answer. The fast run also waits for the webhook backlog to drain
after the last email is sent, and counts the events delivered per second. The receivers
run in this process (asyncio), on the same machine as the services they receive from.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
from harness.db import connect

from bench.config import TUNED
from bench.e2e import E2EResult, measure
from bench.report import INFO, MISS, PASS, Row
from bench.stack import BenchStack

WEBHOOK_SETTINGS = {**TUNED, "WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOW_PRIVATE": "true"}
SLOW_REPLY_S = 10.0
DRAIN_DEADLINE_S = 60.0


@dataclass
class Receiver:
    delay: float = 0.0
    requests: int = 0
    port: int = 0
    server: asyncio.Server | None = None
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while line := await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                del line
                self.requests += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a sleeping reply cut short at the end of the run is no error
        finally:
            self.handlers.discard(task)
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}/hooks"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)


@dataclass
class WebhookRun:
    receiver: str  # "none", "fast", "slow"
    e2e: E2EResult
    events: int = 0  # deliveries that succeeded
    pending: int = 0  # deliveries not yet sent when the run ended
    drain_s: float | None = None  # last email sent -> last event delivered
    events_per_s: float = 0.0  # delivered events / (first request -> last delivery)
    problems: list[str] = field(default_factory=list)


async def _backlog(db_name: str, started: float, last_sent: float, run: WebhookRun) -> None:
    conn = await connect(db_name)
    try:
        deadline = time.time() + DRAIN_DEADLINE_S
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, "
                "count(*) FILTER (WHERE status = 'succeeded') AS done, "
                "max(updated_at) FILTER (WHERE status = 'succeeded') AS last "
                "FROM webhook_deliveries"
            )
            assert row is not None
            run.pending, run.events = row["pending"], row["done"]
            if run.pending == 0 or time.time() > deadline:
                break
            await asyncio.sleep(0.2)
        if row["last"] is not None:
            last = row["last"].timestamp()
            run.drain_s = max(0.0, last - last_sent) if run.pending == 0 else None
            run.events_per_s = run.events / (last - started) if last > started else 0.0
    finally:
        await conn.close()


async def _measure_with(
    stack_run: object, run: WebhookRun, delay: float | None, hooks_key: str
) -> None:
    from bench.stack import Run

    assert isinstance(stack_run, Run)
    receiver = Receiver(delay=delay or 0.0)
    try:
        if delay is not None:
            url = await receiver.start()
            headers = {"Authorization": f"Bearer {hooks_key}"}
            async with httpx.AsyncClient(base_url=stack_run.api_url, headers=headers) as client:
                created = await client.post("/webhooks", json={"url": url})
                if created.status_code != 201:
                    run.problems.append(f"POST /webhooks: {created.status_code} {created.text}")
                    return
        started = time.time()
        await measure(stack_run, run.e2e, "")
        if delay == 0.0 and run.e2e.complete:
            await _backlog(stack_run.db_name, started, started + run.e2e.seconds, run)
            if run.pending:
                run.problems.append(f"{run.pending} webhook deliveries not drained")
    finally:
        await receiver.stop()


def run_webhooks(stack: BenchStack, emails: int, workers: int = 1) -> list[WebhookRun]:
    runs = []
    for kind, delay in (("none", None), ("fast", 0.0), ("slow", SLOW_REPLY_S)):
        result = E2EResult(mode="batch", workers=workers, emails=emails)
        run = WebhookRun(receiver=kind, e2e=result)
        with stack.run(f"webhooks-{kind}", workers=workers, settings=WEBHOOK_SETTINGS) as active:
            # The session's key sends; adding the endpoint needs a key with webhooks:write.
            hooks_key = stack.create_key(active.db_name, "bench-webhooks", "webhooks:write")
            asyncio.run(_measure_with(active, run, delay, hooks_key))
        run.problems += result.problems
        runs.append(run)
    return runs


def webhook_rows(runs: list[WebhookRun]) -> list[Row]:
    by = {r.receiver: r for r in runs}
    base = by["none"].e2e
    rows = [
        Row(
            "webhooks: e2e batch, no endpoint",
            f"{base.emails_per_s:,.0f} emails/s",
            f"{base.sent:,} in {base.seconds:.1f} s, {base.workers} worker",
            "",
            INFO,
        )
    ]
    fast = by["fast"]
    ratio = fast.e2e.emails_per_s / base.emails_per_s if base.emails_per_s else 0.0
    detail = (
        f"{fast.e2e.sent:,} in {fast.e2e.seconds:.1f} s; {fast.events:,} events delivered, "
        f"{fast.events_per_s:,.0f} events/s; {ratio:.0%} of no endpoint"
    )
    ok = fast.e2e.complete and not fast.problems and ratio >= 0.8
    rows.append(
        Row(
            "webhooks: e2e batch, fast receiver, every event",
            f"{fast.e2e.emails_per_s:,.0f} emails/s",
            detail,
            "≥ 80 % of no endpoint",
            PASS if ok else MISS,
        )
    )
    drained = fast.drain_s
    rows.append(
        Row(
            "webhooks: backlog drained after the last email",
            f"{drained:.1f} s" if drained is not None else f"{fast.pending:,} left",
            f"{fast.events:,} events",
            "≤ 10 s",
            PASS if drained is not None and drained <= 10 else MISS,
        )
    )
    # What the receiver's speed costs email delivery: the slow run against the fast one
    # (both write the same outbox rows; only the receiver differs).
    slow = by["slow"]
    fast_rate = fast.e2e.emails_per_s
    slow_ratio = slow.e2e.emails_per_s / fast_rate if fast_rate else 0.0
    slow_base = slow.e2e.emails_per_s / base.emails_per_s if base.emails_per_s else 0.0
    rows.append(
        Row(
            f"webhooks: e2e batch, receiver sleeping {SLOW_REPLY_S:.0f} s per request",
            f"{slow.e2e.emails_per_s:,.0f} emails/s",
            f"{slow.e2e.sent:,} in {slow.e2e.seconds:.1f} s; {slow_ratio:.0%} of the fast "
            f"receiver's run, {slow_base:.0%} of no endpoint",
            "≥ 95 % of the fast receiver's run (run-to-run noise)",
            PASS if slow.e2e.complete and slow_ratio >= 0.95 else MISS,
        )
    )
    return rows
