"""What PIPELINING buys where it matters: one worker's SMTP client to a server 20 ms away.

Postfix's smtp-sink sits behind a small asyncio TCP proxy (its own process) that holds
every segment DELAY_S in each direction, as a provider tens of milliseconds away would.
A client process, standing in for one worker, sends with Mailroom's own SmtpTransport
(messages built by build_message, as the worker builds them) for RUN_S seconds, with
the default SMTP_POOL_SIZE and with the benchmark's, each with pipelining on and off.
With it, the commands of the next email follow the previous body, so each round trip
on a busy connection completes one email (the final reply and the next 354 come back
together); without it, an email takes four (MAIL, RCPT, DATA, body). The latency bound
is pool / (round trips per email x 40 ms); the client's CPU is the other.

`python -m bench --only pipelining`; the proxy and the client are this module's own
entry points (`python -m bench.pipelining proxy|client ...`).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.config import SMTP_POOL_SIZE, WORKER_CONCURRENCY
from bench.report import MISS, PASS, Row
from bench.tools import Postfix
from mailroom.settings import Settings

DELAY_S = 0.020  # each way: a 40 ms round trip
RUN_S = 8.0
TARGET_PER_S = 600.0  # one worker, SMTP_POOL_SIZE=50, pipelining on
# The service's defaults, as mailroom.settings has them.
DEFAULT_POOL = int(Settings.model_fields["smtp_pool_size"].default)
DEFAULT_CONCURRENCY = int(Settings.model_fields["worker_concurrency"].default)


@dataclass
class PipeliningRun:
    pool_size: int
    concurrency: int
    pipelining: bool
    sent: int = 0
    seconds: float = 0.0
    failed: int = 0
    cpu_seconds: float = 0.0  # the client process's user + system time
    problems: list[str] = field(default_factory=list)

    @property
    def emails_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def bound_per_s(self) -> float:
        """What the latency allows: pool / (round trips per email x round-trip time)."""
        return self.pool_size / ((1 if self.pipelining else 4) * 2 * DELAY_S)


def run_pipelining(postfix: Postfix) -> list[PipeliningRun]:
    sink_port, proxy_port = _free_port(), _free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(  # noqa: S603 - argv built here
        [postfix.sink, *user, f"127.0.0.1:{sink_port}", "1000"],
        env=postfix.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = subprocess.Popen(  # noqa: S603
        [*_self(), "proxy", str(proxy_port), str(sink_port), str(DELAY_S)],
        stdout=subprocess.DEVNULL,
    )
    runs = []
    try:
        _wait_for_port(sink_port, sink)
        _wait_for_port(proxy_port, proxy)
        profiles = ((DEFAULT_POOL, DEFAULT_CONCURRENCY), (SMTP_POOL_SIZE, WORKER_CONCURRENCY))
        for pool, concurrency in profiles:
            for pipelining in (True, False):
                run = PipeliningRun(pool, concurrency, pipelining)
                argv = [*_self(), "client", str(proxy_port), str(pool), str(concurrency)]
                argv += ["on" if pipelining else "off", str(RUN_S)]
                done = subprocess.run(  # noqa: S603
                    argv, capture_output=True, text=True, timeout=RUN_S * 10, check=False
                )
                if done.returncode != 0:
                    run.problems.append(f"client failed: {done.stderr.strip()[-500:]}")
                else:
                    figures = json.loads(done.stdout.strip().splitlines()[-1])
                    run.sent, run.seconds = figures["sent"], figures["seconds"]
                    run.failed, run.cpu_seconds = figures["failed"], figures["cpu_seconds"]
                    if run.failed:
                        run.problems.append(f"{run.failed} emails not accepted")
                runs.append(run)
                print(f"   {_label(run)}: {run.emails_per_s:,.0f} emails/s", flush=True)
    finally:
        for process in (proxy, sink):
            process.terminate()
            process.wait(timeout=10)
    return runs


def pipelining_rows(runs: list[PipeliningRun]) -> list[Row]:
    rows = []
    for run in runs:
        detail = (
            f"{run.sent:,} in {run.seconds:.1f} s; bound {run.bound_per_s:,.0f}/s; "
            f"client CPU {run.cpu_seconds / run.seconds:.0%} of a core"
            if run.seconds
            else "; ".join(run.problems)
        )
        target, verdict = "", ""
        if run.pipelining and run.pool_size == SMTP_POOL_SIZE:
            target = f"≥ {TARGET_PER_S:,.0f} emails/s"
            ok = run.emails_per_s >= TARGET_PER_S and not run.problems
            verdict = PASS if ok else MISS
        rows.append(Row(_label(run), f"{run.emails_per_s:,.0f} emails/s", detail, target, verdict))
    return rows


def _label(run: PipeliningRun) -> str:
    how = "pipelined" if run.pipelining else "one command at a time"
    return f"smtp +{DELAY_S * 1000:.0f} ms, pool {run.pool_size}, {how}"


def _self() -> list[str]:
    return [sys.executable, "-m", "bench.pipelining"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"nothing listens on port {port} (process exited {process.poll()})")


# -- the delay proxy ---------------------------------------------------------------------


class _Leg(asyncio.Protocol):
    """One side of a proxied connection: what it receives reaches the other side later."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: _Leg | None = None
        self.transport: asyncio.Transport | None = None
        self.early: list[bytes] = []  # received before the other side was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        # The same delay for every segment keeps them in order (call_later is FIFO for ties).
        asyncio.get_running_loop().call_later(self.delay, self._forward, data)

    def _forward(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
        elif not peer.transport.is_closing():
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            asyncio.get_running_loop().call_later(self.delay, peer.transport.close)


async def proxy(listen_port: int, target_port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()

    async def accepted(client: _Leg) -> None:
        try:
            _, server = await loop.create_connection(lambda: _Leg(delay), "127.0.0.1", target_port)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        client.peer, server.peer = server, client
        for data in client.early:
            client._forward(data)
        client.early.clear()

    def new_client() -> _Leg:
        leg = _Leg(delay)
        loop.call_soon(lambda: asyncio.ensure_future(accepted(leg)))
        return leg

    server = await loop.create_server(new_client, "127.0.0.1", listen_port, backlog=1000)
    async with server:
        await server.serve_forever()


# -- one worker's SMTP client ----------------------------------------------------------------


async def client(port: int, pool: int, concurrency: int, pipelining: bool, seconds: float) -> None:
    from mailroom.emails.message import build_message
    from mailroom.emails.models import Email
    from mailroom.transport.base import Envelope, Outcome
    from mailroom.transport.smtp import SmtpConfig, SmtpTransport

    transport = SmtpTransport(
        SmtpConfig(host="127.0.0.1", port=port, pool_size=pool, pipelining=pipelining)
    )
    now = datetime.now(UTC)

    def envelope(n: int) -> Envelope:
        email = Email(
            id=uuid.uuid4(),
            sender="Bench <bench@example.com>",
            to_addrs=[f"user-{n}@example.com"],
            cc_addrs=[],
            bcc_addrs=[],
            reply_to=[],
            subject="bench",
            text_body="hello",
            html_body=None,
            headers={},
            message_id=f"<{uuid.uuid4().hex}@example.com>",
            created_at=now,
        )
        return Envelope("bench@example.com", (f"user-{n}@example.com",), build_message(email))

    counts = {"sent": 0, "failed": 0}

    async def sender(index: int, until: float) -> None:
        n = index
        while time.monotonic() < until:
            result = await transport.send(envelope(n))
            counts["sent" if result.outcome is Outcome.ACCEPTED else "failed"] += 1
            n += concurrency

    # Warm up: every pooled connection open (and greeted) before the clock starts.
    await asyncio.gather(*(transport.send(envelope(i)) for i in range(pool)))
    began, cpu = time.monotonic(), _cpu_seconds()
    await asyncio.gather(*(sender(i, began + seconds) for i in range(concurrency)))
    took, cpu = time.monotonic() - began, _cpu_seconds() - cpu
    await transport.aclose()
    print(json.dumps({**counts, "seconds": took, "cpu_seconds": cpu}), flush=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> None:
    role, *args = argv
    if role == "proxy":
        asyncio.run(proxy(int(args[0]), int(args[1]), float(args[2])))
    elif role == "client":
        port, pool, concurrency, mode, seconds = args
        asyncio.run(client(int(port), int(pool), int(concurrency), mode == "on", float(seconds)))
    else:
        raise SystemExit(f"unknown role {role!r}: proxy or client")


if __name__ == "__main__":
    main(sys.argv[1:])
