"""One launcher for the stack both harnesses run Mailroom against.

A `Stack` owns a folder for its processes' logs, a `redis-server` on a spare port, a port for
the SMTP sink the harness starts (Postfix's smtp-sink for the benchmark, chaos.sink for the
fault runs), the databases it migrates (dropped by `close`), and the API and worker processes
it starts with `start_app`, which returns once the API answers `GET /ready` and every worker
has written its heartbeat (it consumes jobs). Every process gets the same wiring (`env`); the
settings that differ between harnesses are given to the constructor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import db
from harness.procs import Process, binary, free_port, wait_for_port

READY_TIMEOUT_S = 60.0


def mailroom(*args: str) -> list[str]:
    """The argv of a `mailroom` command, run by this interpreter."""
    return [sys.executable, "-m", "mailroom", *args]


def run_command(argv: list[str], env: dict[str, str], what: str) -> str:
    """Run a command to its end; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(  # noqa: S603 - argv built by the harness
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr.strip()}")
    return done.stdout


@dataclass
class App:
    """The API and worker processes of one run."""

    api_url: str
    api: Process
    workers: list[Process]

    @property
    def processes(self) -> list[Process]:
        return [self.api, *self.workers]


class Stack:
    """Redis, an SMTP port, databases and Mailroom processes of one harness session."""

    def __init__(self, prefix: str, settings: Mapping[str, str]) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.settings = dict(settings)
        self.redis_port = free_port()
        self.smtp_port = free_port()
        self.redis: Process | None = None
        self._databases: list[str] = []

    # -- configuration -------------------------------------------------------------

    def env(self, database_url: str, *, heartbeat: Path | None = None) -> dict[str, str]:
        """The environment of a `mailroom` command or process: wired to this stack's
        services, then the harness's settings."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.smtp_port),
                "SMTP_SECURITY": "none",
                "SMTP_USERNAME": "",
                "SMTP_PASSWORD": "",
                "LOG_FORMAT": "json",
                "WORKER_HEARTBEAT_FILE": str(heartbeat) if heartbeat else "",
                "WORKER_METRICS_PORT": "0",  # several workers on one host
            }
        )
        env.update(self.settings)
        return env

    # -- services ------------------------------------------------------------------

    def create_database(self, name: str) -> None:
        """`mailroom migrate`, which creates the database; `close` drops it (even if the
        migration failed half-way)."""
        self._databases.append(name)
        run_command(mailroom("migrate"), self.env(db.service_url(name)), "mailroom migrate")

    def create_key(self, db_name: str, name: str, scopes: str = "send,logs:read") -> str:
        out = run_command(
            mailroom("keys", "create", "--name", name, "--scopes", scopes),
            self.env(db.service_url(db_name)),
            "mailroom keys create",
        )
        return [line.strip() for line in out.splitlines() if line.strip()][-1]

    def start_redis(self) -> Process:
        """redis-server on this stack's port, without persistence (restartable, empty)."""
        argv = [binary("redis-server", "redis-server"), "--port", str(self.redis_port)]
        argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.redis = Process("redis", argv, dict(os.environ), self.tmp / "redis.log").start()
        wait_for_port(self.redis_port, proc=self.redis)
        return self.redis

    def redis_cli(self, *args: str) -> str:
        return run_command(
            [binary("redis-cli", "redis-tools"), "-p", str(self.redis_port), *args],
            dict(os.environ),
            f"redis-cli {' '.join(args)}",
        ).strip()

    # -- Mailroom's processes --------------------------------------------------------

    def start_app(
        self,
        database_url: str,
        logs: Path,
        *,
        workers: int,
        api_port: int | None = None,
        api_processes: int = 1,
        worker_args: Sequence[str] = (),
    ) -> App:
        """The API and `workers` worker processes, logging into `logs`; returns once they
        are ready, and stops whatever it started if one of them is not."""
        logs.mkdir(parents=True, exist_ok=True)
        port = api_port or free_port()
        argv = mailroom("api", "--port", str(port))
        if api_processes > 1:
            argv += ["--processes", str(api_processes)]
        app = App(
            api_url=f"http://127.0.0.1:{port}",
            api=Process("api", argv, self.env(database_url), logs / "api.log"),
            workers=[],
        )
        try:
            app.api.start()
            heartbeats = []
            for n in range(workers):
                heartbeat = logs / f"worker-{n}.heartbeat"
                worker = Process(
                    f"worker-{n}",
                    mailroom("worker", *worker_args),
                    self.env(database_url, heartbeat=heartbeat),
                    logs / f"worker-{n}.log",
                )
                app.workers.append(worker.start())
                heartbeats.append((worker, heartbeat))
            wait_for_port(port, timeout=READY_TIMEOUT_S, proc=app.api)
            _wait_ready(app.api_url, app.api)
            for worker, heartbeat in heartbeats:
                _wait_file(heartbeat, worker)
        except BaseException:
            stop_app(app)
            raise
        return app

    def close(self, *others: Process | None, keep_logs: bool = True) -> None:
        """Stop `others` (the harness's own processes, in that order), then Redis, and drop
        the databases; never raises. The logs stay in self.tmp unless `keep_logs` is off."""
        for proc in (*others, self.redis):
            if proc is not None:
                proc.stop(timeout=10)
        db.drop_databases(self._databases)
        if not keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)


def stop_app(app: App, timeout: float = 30.0) -> None:
    """Workers first (they drain), then the API."""
    for proc in (*app.workers, app.api):
        proc.stop(timeout=timeout)


def _wait_ready(api_url: str, api: Process) -> None:
    """Until GET /ready answers 200 (PostgreSQL and Redis reachable from the API)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if not api.alive:
            raise RuntimeError(f"the API exited (code {api.returncode}); see {api.log}")
        try:
            response = httpx.get(f"{api_url}/ready", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"the API is not ready after {READY_TIMEOUT_S:.0f} s: {last}")


def _wait_file(path: Path, proc: Process) -> None:
    """Until a worker's heartbeat file exists: it is written once the worker consumes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited (code {proc.returncode}); see {proc.log}")
        if path.exists():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} wrote no heartbeat in {READY_TIMEOUT_S:.0f} s")
