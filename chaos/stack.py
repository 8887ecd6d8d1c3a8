"""Everything one scenario runs against (harness.stack): a fresh database, Redis, a scripted
SMTP sink (chaos.sink), the API and workers, and in some scenarios a PostgreSQL proxy."""

from __future__ import annotations

import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import db
from harness.procs import Process, free_port, wait_for_port
from harness.stack import App, Stack, stop_app

WORKERS = 2
CONCURRENCY = 20
SMTP_TIMEOUT = 5  # seconds; chaos.scenarios' slow-server scenario is built around it


@dataclass
class SinkScript:
    """How the SMTP sink answers DATA in a scenario (see chaos.sink)."""

    fail_first: int = 0
    code: int = 451
    fail_marker: str | None = None
    reject_code: int = 550
    reject_marker: str | None = None
    delay: float = 0.0
    slow_marker: str | None = None
    slow_first: int = 0
    slow_delay: float = 0.0
    late_marker: str | None = None
    late_first: int = 0
    late_delay: float = 0.0

    def argv(self) -> list[str]:
        args = ["--fail-first", str(self.fail_first), "--code", str(self.code)]
        args += ["--reject-code", str(self.reject_code), "--delay", str(self.delay)]
        if self.fail_marker:
            args += ["--fail-marker", self.fail_marker]
        if self.reject_marker:
            args += ["--reject-marker", self.reject_marker]
        if self.slow_marker:
            args += ["--slow-marker", self.slow_marker, "--slow-first", str(self.slow_first)]
            args += ["--slow-delay", str(self.slow_delay)]
        if self.late_marker:
            args += ["--late-marker", self.late_marker, "--late-first", str(self.late_first)]
            args += ["--late-delay", str(self.late_delay)]
        return args


def settings(db_name: str) -> dict[str, str]:
    """The scenarios' settings: quick retries and sweeps, short leases, no rate limit."""
    return {
        "QUEUE_PREFIX": f"chaos-{db_name}",
        "SMTP_TIMEOUT": str(SMTP_TIMEOUT),
        # The reply to the final dot too: smtp-slow and smtp-late answer it after the timeout.
        "SMTP_DATA_TIMEOUT": str(SMTP_TIMEOUT),
        # Enough attempts to outlast the 30 s SMTP outage at RETRY_BACKOFF_MAX=5.
        "MAX_ATTEMPTS": "20",
        "RETRY_BACKOFF_BASE": "1",
        "RETRY_BACKOFF_MAX": "5",
        "WORKER_CONCURRENCY": str(CONCURRENCY),
        "SWEEP_INTERVAL": "2",
        "SWEEP_GRACE": "5",
        "SENDING_LEASE": "20",
        "SEND_RATE_LIMIT": "1000000/second",
        "LOG_LEVEL": "WARNING",
    }


class ChaosStack(Stack):
    def __init__(
        self,
        scenario: str,
        sink_script: SinkScript | None = None,
        *,
        pg_proxy: bool = False,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.db_name = f"mailroom_chaos_{secrets.token_hex(4)}"
        super().__init__(f"chaos-{scenario}", {**settings(self.db_name), **(overrides or {})})
        self.sink_script = sink_script or SinkScript()
        # Put chaos.pgproxy between the API/workers and PostgreSQL (migrations, key creation
        # and the harness's own checks still go direct).
        self.pg_proxy = pg_proxy
        self.pg_proxy_port = free_port() if pg_proxy else db.PG_PORT
        self.api_port = free_port()
        self.record = self.tmp / "sink-received.txt"
        self.record.touch()
        self.api_key = ""
        self.sink: Process | None = None
        self.proxy: Process | None = None
        self.app: App | None = None

    # -- configuration -------------------------------------------------------------

    @property
    def plain_database_url(self) -> str:
        return db.plain_url(self.db_name)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def workers(self) -> list[Process]:
        return self.app.workers if self.app is not None else []

    def _env(self) -> dict[str, str]:
        return self.env(db.service_url(self.db_name))

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.create_database(self.db_name)
        self.start_redis()
        self.start_sink()
        self.api_key = self.create_key(self.db_name, "chaos")
        if self.pg_proxy:
            self.start_pg_proxy()
        self.app = self.start_app(
            # What the API and the workers use: through the proxy when there is one.
            db.service_url(self.db_name, port=self.pg_proxy_port),
            self.tmp,
            workers=WORKERS,
            api_port=self.api_port,
            worker_args=("--concurrency", str(CONCURRENCY)),
        )

    def start_sink(self) -> None:
        argv = [sys.executable, "-m", "chaos.sink", "--port", str(self.smtp_port)]
        argv += ["--record", str(self.record), *self.sink_script.argv()]
        self.sink = Process("sink", argv, self._env(), self.tmp / "sink.log").start()
        wait_for_port(self.smtp_port, proc=self.sink)

    def start_pg_proxy(self) -> None:
        argv = [sys.executable, "-m", "chaos.pgproxy", "--port", str(self.pg_proxy_port)]
        argv += ["--target-host", db.PG_HOST, "--target-port", str(db.PG_PORT)]
        self.proxy = Process("pgproxy", argv, self._env(), self.tmp / "pgproxy.log").start()
        wait_for_port(self.pg_proxy_port, proc=self.proxy)

    def cut_pg_proxy(self) -> None:
        """Close the proxy's listener and abort every connection through it."""
        assert self.proxy is not None
        self.proxy.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the listener is gone once a connect is refused
            try:
                with socket.create_connection((db.PG_HOST, self.pg_proxy_port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.05)
        raise RuntimeError("the PostgreSQL proxy still accepts connections after a cut")

    def restore_pg_proxy(self) -> None:
        """Listen again on the same port."""
        assert self.proxy is not None
        self.proxy.signal(signal.SIGUSR2)
        wait_for_port(self.pg_proxy_port, timeout=10, proc=self.proxy)

    def stop(self) -> None:
        """Stop everything started, in reverse order, and drop the database."""
        if self.app is not None:
            stop_app(self.app, timeout=40)
        self.close(self.sink, self.proxy)

    def worker_logs(self) -> list[Path]:
        return [w.log for w in self.workers]
