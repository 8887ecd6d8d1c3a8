"""Everything one scenario runs against: a fresh database, Redis, SMTP sink, API and workers."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from chaos.procs import Process, free_port, wait_for_port

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_SERVER = f"postgres@{PG_HOST}:{PG_PORT}"
WORKERS = 2
CONCURRENCY = 20


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
        return args


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH")
    return path


@dataclass
class Stack:
    scenario: str
    sink_script: SinkScript = field(default_factory=SinkScript)
    # Put chaos.pgproxy between the API/workers and PostgreSQL (migrations, key creation and
    # the harness's own checks still go direct).
    pg_proxy: bool = False
    tmp: Path = field(init=False)
    db_name: str = field(init=False)
    redis_port: int = field(init=False)
    smtp_port: int = field(init=False)
    api_port: int = field(init=False)
    pg_proxy_port: int = field(init=False)
    record: Path = field(init=False)
    redis: Process | None = field(init=False, default=None)
    sink: Process | None = field(init=False, default=None)
    proxy: Process | None = field(init=False, default=None)
    api: Process | None = field(init=False, default=None)
    workers: list[Process] = field(init=False, default_factory=list)
    api_key: str = field(init=False, default="")
    _db_created: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"chaos-{self.scenario}-"))
        self.db_name = f"mailroom_chaos_{secrets.token_hex(4)}"
        self.redis_port = free_port()
        self.smtp_port = free_port()
        self.api_port = free_port()
        self.pg_proxy_port = free_port() if self.pg_proxy else PG_PORT
        self.record = self.tmp / "sink-received.txt"
        self.record.touch()

    # -- configuration -------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://{PG_SERVER}/{self.db_name}"

    @property
    def service_database_url(self) -> str:
        """What the API and the workers use: through the proxy when there is one."""
        server = f"postgres@{PG_HOST}:{self.pg_proxy_port}"
        return f"postgresql+asyncpg://{server}/{self.db_name}"

    @property
    def plain_database_url(self) -> str:
        return f"postgresql://{PG_SERVER}/{self.db_name}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, heartbeat: str = "", *, service: bool = False) -> dict[str, str]:
        """The environment for a mailroom command; `service` for the API and workers."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.service_database_url if service else self.database_url,
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "QUEUE_PREFIX": f"chaos-{self.db_name}",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.smtp_port),
                "SMTP_SECURITY": "none",
                "SMTP_USERNAME": "",
                "SMTP_PASSWORD": "",
                "SMTP_TIMEOUT": "5",
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
                "LOG_FORMAT": "json",
                "WORKER_HEARTBEAT_FILE": heartbeat,
                "WORKER_METRICS_PORT": "0",  # several workers on one host
            }
        )
        return env

    def _mailroom(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailroom", *args]

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._db_created = True  # `mailroom migrate` creates it; drop it even if that fails
        subprocess.run(  # noqa: S603
            self._mailroom("migrate"), env=self.env(), check=True, capture_output=True
        )
        self.start_redis()
        self.start_sink()
        key = subprocess.run(  # noqa: S603
            self._mailroom("keys", "create", "--name", "chaos", "--scopes", "send,logs:read"),
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
        )
        lines = [line.strip() for line in key.stdout.splitlines() if line.strip()]
        self.api_key = lines[-1]
        if self.pg_proxy:
            self.start_pg_proxy()
        self.api = Process(
            "api",
            self._mailroom("api", "--port", str(self.api_port)),
            self.env(service=True),
            self.tmp / "api.log",
        ).start()
        wait_for_port(self.api_port, proc=self.api)
        for n in range(WORKERS):
            heartbeat = str(self.tmp / f"worker-{n}.heartbeat")
            worker = Process(
                f"worker-{n}",
                self._mailroom("worker", "--concurrency", str(CONCURRENCY)),
                self.env(heartbeat, service=True),
                self.tmp / f"worker-{n}.log",
            )
            self.workers.append(worker.start())

    def start_redis(self) -> None:
        argv = [_binary("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.redis = Process("redis", argv, self.env(), self.tmp / "redis.log").start()
        wait_for_port(self.redis_port, proc=self.redis)

    def start_sink(self) -> None:
        argv = [sys.executable, "-m", "chaos.sink", "--port", str(self.smtp_port)]
        argv += ["--record", str(self.record), *self.sink_script.argv()]
        self.sink = Process("sink", argv, self.env(), self.tmp / "sink.log").start()
        wait_for_port(self.smtp_port, proc=self.sink)

    def start_pg_proxy(self) -> None:
        argv = [sys.executable, "-m", "chaos.pgproxy", "--port", str(self.pg_proxy_port)]
        argv += ["--target-host", PG_HOST, "--target-port", str(PG_PORT)]
        self.proxy = Process("pgproxy", argv, self.env(), self.tmp / "pgproxy.log").start()
        wait_for_port(self.pg_proxy_port, proc=self.proxy)

    def cut_pg_proxy(self) -> None:
        """Close the proxy's listener and abort every connection through it."""
        assert self.proxy is not None
        self.proxy.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the listener is gone once a connect is refused
            try:
                with socket.create_connection((PG_HOST, self.pg_proxy_port), timeout=0.5):
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

    def redis_cli(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603
            [_binary("redis-cli"), "-p", str(self.redis_port), *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def stop(self) -> None:
        """Stop everything started, in reverse order, and drop the database."""
        for worker in self.workers:
            worker.stop()
        for proc in (self.api, self.sink, self.redis, self.proxy):
            if proc is not None:
                proc.stop(timeout=10)
        if self._db_created:
            drop_database(self.db_name)

    def worker_logs(self) -> list[Path]:
        return [w.log for w in self.workers]


def drop_database(name: str) -> None:
    import asyncio

    async def drop() -> None:
        conn = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    for _ in range(3):
        try:
            asyncio.run(drop())
            return
        except Exception as exc:  # noqa: BLE001 - retry, then report
            print(f"warning: could not drop {name}: {exc}", file=sys.stderr)
            time.sleep(1)
