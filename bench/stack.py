"""What the benchmark runs against, all on this machine and all its own.

Kept for the whole session: a Redis on a spare port, a Postfix smtp-sink, and a template
database (migrated, with one API key). Each run gets a fresh copy of that database, an
emptied Redis, and newly started API and worker processes, so runs do not see each other's
rows, jobs, caches or memory high-water marks.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from chaos.procs import Process, free_port, wait_for_port

from bench import db
from bench.config import SMTP_POOL_SIZE, WORKER_CONCURRENCY
from bench.rss import tree_peak_rss_mb
from bench.tools import Postfix, ToolMissing

READY_TIMEOUT_S = 60.0


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not on PATH (Debian package redis-server)")
    return path


def _mailroom(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailroom", *args]


@dataclass
class Run:
    """The services of one run, and (after it) the peak memory of each process."""

    name: str
    db_name: str
    api_url: str
    api_key: str
    api: Process
    workers: list[Process]
    # "api" / "worker-0" ... -> peak RSS in MB of that process (the largest of its tree)
    rss_mb: dict[str, float] = field(default_factory=dict)


class BenchStack:
    def __init__(self, postfix: Postfix, *, api_processes: int = 1) -> None:
        self.postfix = postfix
        self.api_processes = api_processes
        self.tmp = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
        token = secrets.token_hex(4)
        self.template_db = f"mailroom_bench_{token}"
        self.db_name = f"mailroom_bench_{token}_run"
        self.redis_port = free_port()
        self.smtp_port = free_port()
        self.api_key = ""
        self.redis: Process | None = None
        self.sink: Process | None = None
        self._databases: list[str] = []
        self._runs = 0

    # -- configuration -------------------------------------------------------------

    def env(self, db_name: str, heartbeat: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": db.service_url(db_name),
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.smtp_port),
                "SMTP_SECURITY": "none",
                "SMTP_USERNAME": "",
                "SMTP_PASSWORD": "",
                "SMTP_POOL_SIZE": str(SMTP_POOL_SIZE),
                "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                # The benchmark measures throughput, not the rate limiter's refusals.
                "SEND_RATE_LIMIT": "1000000/second",
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                "WORKER_HEARTBEAT_FILE": str(heartbeat) if heartbeat else "",
                "WORKER_METRICS_PORT": "0",  # several workers on one host
            }
        )
        return env

    # -- the session ---------------------------------------------------------------

    def start(self) -> None:
        # Registered first: `mailroom migrate` creates the database, so drop it even if
        # the migration fails half-way.
        self._databases += [self.template_db, self.db_name]
        self._check(_mailroom("migrate"), self.env(self.template_db), "mailroom migrate")
        key = self._check(
            _mailroom("keys", "create", "--name", "bench", "--scopes", "send,logs:read"),
            self.env(self.template_db),
            "mailroom keys create",
        )
        self.api_key = [line.strip() for line in key.splitlines() if line.strip()][-1]
        redis = [_binary("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        redis += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.redis = Process("redis", redis, dict(os.environ), self.tmp / "redis.log").start()
        wait_for_port(self.redis_port, proc=self.redis)
        self.sink = Process(
            "smtp-sink",
            self.postfix.sink_argv(self.smtp_port),
            self.postfix.env(),
            self.tmp / "smtp-sink.log",
        ).start()
        wait_for_port(self.smtp_port, proc=self.sink)

    def _check(self, argv: list[str], env: dict[str, str], what: str) -> str:
        done = subprocess.run(  # noqa: S603 - argv built here
            argv, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr.strip()}")
        return done.stdout

    def close(self, *, keep_logs: bool = False) -> None:
        """Stop the session's services and drop its databases; never raises. The
        processes' logs stay in self.tmp if asked (when something went wrong)."""
        for proc in (self.sink, self.redis):
            if proc is not None:
                proc.stop(timeout=10)
        db.drop_databases(self._databases)
        if not keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- one run -------------------------------------------------------------------

    @contextmanager
    def run(self, name: str, *, workers: int) -> Iterator[Run]:
        """A fresh database and Redis, the API, and `workers` worker processes (ready)."""
        self._runs += 1
        asyncio.run(db.recreate_from_template(self.db_name, self.template_db))
        self._redis_cli("FLUSHALL")
        logs = self.tmp / f"{self._runs:02d}-{name}"
        logs.mkdir()
        api_port = free_port()
        argv = _mailroom("api", "--port", str(api_port))
        if self.api_processes > 1:
            argv += ["--processes", str(self.api_processes)]
        api = Process("api", argv, self.env(self.db_name), logs / "api.log")
        procs = Run(
            name=name,
            db_name=self.db_name,
            api_url=f"http://127.0.0.1:{api_port}",
            api_key=self.api_key,
            api=api,
            workers=[],
        )
        try:
            api.start()
            heartbeats = []
            for n in range(workers):
                heartbeat = logs / f"worker-{n}.heartbeat"
                worker = Process(
                    f"worker-{n}",
                    _mailroom("worker"),
                    self.env(self.db_name, heartbeat),
                    logs / f"worker-{n}.log",
                )
                procs.workers.append(worker.start())
                heartbeats.append((worker, heartbeat))
            wait_for_port(api_port, timeout=READY_TIMEOUT_S, proc=api)
            _wait_ready(procs.api_url, api)
            for worker, heartbeat in heartbeats:
                _wait_file(heartbeat, worker)
            yield procs
        finally:
            for proc in (api, *procs.workers):
                if proc.pid is not None and proc.alive:
                    peaks = tree_peak_rss_mb(proc.pid)
                    if peaks:
                        procs.rss_mb[proc.name] = max(peaks.values())
            for proc in (*procs.workers, api):
                proc.stop(timeout=30)

    def _redis_cli(self, *args: str) -> str:
        return self._check(
            [_binary("redis-cli"), "-p", str(self.redis_port), *args],
            dict(os.environ),
            f"redis-cli {' '.join(args)}",
        )


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
