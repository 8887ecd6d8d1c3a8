"""What the benchmark runs against, all on this machine and all its own (harness.stack).

Kept for the whole session: a Redis on a spare port, a Postfix smtp-sink, and a template
database (migrated, with one API key). Each run gets a fresh copy of that database, an
emptied Redis, and newly started API and worker processes with the settings of its profile
(bench.config), so runs do not see each other's rows, jobs, caches or memory high-water marks.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from harness import db
from harness.procs import Process, wait_for_port
from harness.stack import Stack, stop_app

from bench.config import TUNED
from bench.rss import tree_peak_rss_mb
from bench.tools import Postfix


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


class BenchStack(Stack):
    def __init__(self, postfix: Postfix, *, api_processes: int = 1) -> None:
        super().__init__("mailroom-bench", TUNED)
        self.postfix = postfix
        self.api_processes = api_processes
        token = secrets.token_hex(4)
        self.template_db = f"mailroom_bench_{token}"
        self.db_name = f"mailroom_bench_{token}_run"
        self.api_key = ""
        self.sink: Process | None = None
        self._runs = 0

    # -- the session ---------------------------------------------------------------

    def start(self) -> None:
        self.create_database(self.template_db)
        self._databases.append(self.db_name)  # the runs' copy, dropped by close()
        self.api_key = self.create_key(self.template_db, "bench")
        self.start_redis()
        self.sink = Process(
            "smtp-sink",
            self.postfix.sink_argv(self.smtp_port),
            self.postfix.env(),
            self.tmp / "smtp-sink.log",
        ).start()
        wait_for_port(self.smtp_port, proc=self.sink)

    def close(self, *others: Process | None, keep_logs: bool = False) -> None:
        """Stop the session's services and drop its databases; never raises. The
        processes' logs stay in self.tmp if asked (when something went wrong)."""
        super().close(*others, self.sink, keep_logs=keep_logs)

    # -- one run -------------------------------------------------------------------

    @contextmanager
    def run(self, name: str, *, workers: int, settings: Mapping[str, str] = TUNED) -> Iterator[Run]:
        """A fresh database and Redis, the API, and `workers` worker processes (ready),
        started with `settings` (a profile of bench.config)."""
        self._runs += 1
        asyncio.run(db.recreate_from_template(self.db_name, self.template_db))
        self.redis_cli("FLUSHALL")
        self.settings = dict(settings)
        logs = self.tmp / f"{self._runs:02d}-{name}"
        app = self.start_app(
            db.service_url(self.db_name),
            logs,
            workers=workers,
            api_processes=self.api_processes,
        )
        procs = Run(
            name=name,
            db_name=self.db_name,
            api_url=app.api_url,
            api_key=self.api_key,
            api=app.api,
            workers=app.workers,
        )
        try:
            yield procs
        finally:
            for proc in app.processes:
                if proc.pid is not None and proc.alive:
                    peaks = tree_peak_rss_mb(proc.pid)
                    if peaks:
                        procs.rss_mb[proc.name] = max(peaks.values())
            stop_app(app)
