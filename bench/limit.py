"""The ceiling: Postfix's smtp-source into smtp-sink, no Mailroom in between.

This is what the machine's loopback and the sink can take; every end-to-end figure is
bounded by it (and in practice far below it, since Mailroom also writes each email to
PostgreSQL three times and passes it through Redis).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.procs import Process, free_port, wait_for_port

from bench.config import LIMIT_MESSAGE_BYTES, LIMIT_MESSAGES, LIMIT_SESSIONS
from bench.tools import Postfix

SOURCE_TIMEOUT_S = 120.0


@dataclass
class LimitResult:
    messages: int
    sessions: int
    reused_seconds: float = 0.0  # smtp-source -d: many messages per connection
    per_message_seconds: float = 0.0  # one connection per message

    @property
    def reused_per_s(self) -> float:
        return self.messages / self.reused_seconds if self.reused_seconds else 0.0

    @property
    def per_message_per_s(self) -> float:
        return self.messages / self.per_message_seconds if self.per_message_seconds else 0.0


def _source(postfix: Postfix, port: int, *, reuse: bool) -> float:
    """Seconds smtp-source takes to send LIMIT_MESSAGES over LIMIT_SESSIONS sessions."""
    argv = [postfix.source]
    if reuse:
        argv.append("-d")  # "don't disconnect after sending a message"
    argv += ["-s", str(LIMIT_SESSIONS), "-m", str(LIMIT_MESSAGES)]
    argv += ["-l", str(LIMIT_MESSAGE_BYTES), "-f", "bench@example.com", "-t", "sink@example.com"]
    argv.append(f"127.0.0.1:{port}")
    began = time.monotonic()
    done = subprocess.run(  # noqa: S603 - argv built here
        argv,
        env=postfix.env(),
        capture_output=True,
        text=True,
        timeout=SOURCE_TIMEOUT_S,
        check=False,
    )
    took = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({done.returncode}): {done.stderr.strip()}")
    return took


def run_limit(postfix: Postfix) -> LimitResult:
    result = LimitResult(messages=LIMIT_MESSAGES, sessions=LIMIT_SESSIONS)
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="mailroom-bench-limit-"))
    sink = Process("smtp-sink", postfix.sink_argv(port), postfix.env(), tmp / "smtp-sink.log")
    try:
        sink.start()
        wait_for_port(port, proc=sink)
        result.reused_seconds = _source(postfix, port, reuse=True)
        result.per_message_seconds = _source(postfix, port, reuse=False)
    finally:
        sink.stop(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)
    return result
