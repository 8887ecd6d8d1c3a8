"""`mailroom worker --processes N`: N worker processes under one supervisor.

A worker is CPU-bound in Python (job bookkeeping, SMTP, SQL), so one process uses
at most one core; more processes deliver more. The supervisor starts each as
`python -m mailroom worker`, passes SIGTERM/SIGINT on (each drains as usual), and
restarts one that dies, waiting longer after each quick death so that a process
that cannot start does not spin. Child i serves its metrics on WORKER_METRICS_PORT + i
(each is a Prometheus target of its own; a restarted child keeps its port).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

POLL_INTERVAL = 0.2  # seconds between checks on the children
MAX_RESTART_DELAY = 30.0
HEALTHY_AFTER = 60.0  # a child that ran this long resets the restart delay


@dataclass
class _Child:
    argv: list[str]
    popen: subprocess.Popen[bytes] = field(init=False)
    started: float = field(init=False, default=0.0)
    restart_delay: float = 1.0
    restart_at: float | None = None
    env: dict[str, str] | None = None
    signalled: bool = field(init=False, default=False)  # told to stop

    def start(self) -> None:
        # A session of its own: a Ctrl-C at the terminal reaches the supervisor only,
        # which passes it on once, rather than every process receiving it directly.
        self.popen = subprocess.Popen(  # noqa: S603
            self.argv,
            start_new_session=True,
            env=self.env,
            preexec_fn=_stop_when_the_supervisor_dies,
        )
        self.started = time.monotonic()
        self.restart_at = None
        self.signalled = False


def _stop_when_the_supervisor_dies() -> None:
    """In the child, before exec: SIGTERM (a clean drain) if the supervisor is killed.

    Without it, a supervisor killed outright (kill -9, the OOM killer) would leave its
    workers running unsupervised, in sessions of their own. Linux only; elsewhere the
    workers simply outlive it.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def run_worker_processes(processes: int, concurrency: int | None, *, metrics_port: int = 0) -> int:
    """Run until SIGTERM/SIGINT and every child has exited; returns the worst exit code."""
    argv = [sys.executable, "-m", "mailroom", "worker"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    children = [_Child(argv, env=_metrics_env(metrics_port, i)) for i in range(processes)]
    stop_signal: int | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        # Only noted here: the loop passes it on. A signal that lands while a child is
        # being started would otherwise miss that child, and the supervisor would wait
        # for it forever.
        nonlocal stop_signal
        stop_signal = signum

    for child in children:
        child.start()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("worker.supervisor_started", processes=processes)
    try:
        while True:
            now = time.monotonic()
            stopping = stop_signal is not None
            for child in children:
                code = child.popen.poll()
                if stop_signal is not None and code is None and not child.signalled:
                    child.popen.send_signal(stop_signal)
                    child.signalled = True
                if code is None or stopping:
                    continue
                if child.restart_at is None:
                    ran = now - child.started
                    if ran >= HEALTHY_AFTER:
                        child.restart_delay = 1.0
                    log.warning(
                        "worker.process_exited",
                        pid=child.popen.pid,
                        code=code,
                        restart_in_s=child.restart_delay,
                    )
                    child.restart_at = now + child.restart_delay
                    child.restart_delay = min(child.restart_delay * 2, MAX_RESTART_DELAY)
                elif now >= child.restart_at:
                    child.start()
            if stopping and all(c.popen.poll() is not None for c in children):
                break
            time.sleep(POLL_INTERVAL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max((c.popen.returncode or 0) for c in children)


def _metrics_env(base_port: int, index: int) -> dict[str, str]:
    """The environment of child ``index``: its own metrics port (0, off, stays off)."""
    port = base_port + index if base_port else 0
    if port > 65535:
        log.warning("worker.metrics_port_out_of_range", port=port, child=index)
        port = 0
    return {**os.environ, "WORKER_METRICS_PORT": str(port)}
