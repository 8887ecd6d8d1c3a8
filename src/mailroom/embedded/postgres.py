"""The embedded PostgreSQL: initdb once, then a postmaster on a free loopback port.

It listens on TCP 127.0.0.1 only (its unix socket stays inside the data directory),
trusts local connections as user `postgres`, and stops with a fast shutdown (a
checkpoint), so the next start needs no crash recovery. A data directory it cannot use
(another major version, another owner, a server already running on it) is an error
that says how to fix it; nothing in it is ever removed or rewritten.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import structlog

from mailroom.embedded.account import grant_traverse, owner_name, postgres_account
from mailroom.embedded.binaries import Binaries, postgres_major_version
from mailroom.embedded.child import RunAs, run, spawn, stop
from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.ports import HOST, PortTaken, free_port, wait_ready

log = structlog.get_logger(__name__)

# Enough for a development machine; PostgreSQL's 128 MB default would mostly sit idle.
_SETTINGS = ("shared_buffers=32MB", "max_connections=100", "logging_collector=off")
# Throwaway servers (the tests') trade durability for speed: their data dies with them.
_THROWAWAY = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class EmbeddedPostgres:
    def __init__(
        self, binaries: Binaries, data_dir: Path, log_file: Path, *, throwaway: bool = False
    ) -> None:
        self._binaries = binaries
        self.data_dir = data_dir.resolve()
        self._log = log_file
        self._throwaway = throwaway
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        account = postgres_account()
        if account is not None:
            grant_traverse([self.data_dir, self._binaries.postgres_bin], account)
        if self._needs_initdb(account):
            self._initdb(account)
        for attempt in range(3):
            try:
                self._start_on(free_port(), account)
                return
            except PortTaken:
                if attempt == 2:
                    raise

    def _needs_initdb(self, account: RunAs | None) -> bool:
        expected = account.uid if account is not None else os.geteuid()
        if not self.data_dir.exists():
            self.data_dir.mkdir(mode=0o700, parents=True)
            if account is not None:
                os.chown(self.data_dir, account.uid, account.gid)
            return True
        owner = self.data_dir.stat().st_uid
        if owner != expected:
            raise EmbeddedServerError(
                f"{self.data_dir} belongs to {owner_name(owner)}, but the embedded PostgreSQL "
                f"runs as {owner_name(expected)}. Run as the same user as before, or give it "
                f"over: `chown -R {owner_name(expected)} {self.data_dir}`."
            )
        if not any(self.data_dir.iterdir()):
            return True
        version_file = self.data_dir / "PG_VERSION"
        if not version_file.is_file():
            raise EmbeddedServerError(
                f"{self.data_dir} is not a PostgreSQL data directory (no PG_VERSION). "
                "Move it away (it is not deleted for you) and run again to start afresh."
            )
        found, wanted = version_file.read_text().strip(), postgres_major_version(self._binaries)
        if found != wanted:
            raise EmbeddedServerError(
                f"{self.data_dir} holds PostgreSQL {found} data, and the embedded server is "
                f"PostgreSQL {wanted}. To keep the data, dump it with PostgreSQL {found}'s "
                f"pg_dump and load it after; to start afresh, move {self.data_dir} away."
            )
        self._check_pid_file()
        return False

    def _check_pid_file(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return  # none, or unreadable: PostgreSQL checks it again itself
        if _is_postgres(pid):
            raise EmbeddedServerError(
                f"A PostgreSQL server (pid {pid}) is already running on {self.data_dir}, "
                f"and this `mailroom dev` did not start it. Stop it (`kill -INT {pid}`) "
                "and run again."
            )
        if _alive(pid):
            # Its pid now belongs to another program: PostgreSQL would refuse to start.
            pid_file.unlink()
            log.info("embedded.stale_pid_file_removed", path=str(pid_file), pid=pid)

    def _initdb(self, account: RunAs | None) -> None:
        argv: list[str | Path] = [self._binaries.initdb, "-D", self.data_dir, "-U", "postgres"]
        argv += ["-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"]
        if self._throwaway:
            argv.append("--no-sync")
        run(argv, log=self._log, run_as=account, cwd=self.data_dir)
        log.info("embedded.postgres_initialised", data=str(self.data_dir))

    def _start_on(self, port: int, account: RunAs | None) -> None:
        argv: list[str | Path] = [self._binaries.postgres, "-D", self.data_dir]
        argv += ["-h", HOST, "-p", str(port), "-k", self.data_dir]
        for setting in _SETTINGS + (_THROWAWAY if self._throwaway else ()):
            argv += ["-c", setting]
        process = spawn(
            argv, log=self._log, death_signal=signal.SIGINT, run_as=account, cwd=self.data_dir
        )
        self._process, self.port = process, port
        try:
            wait_ready(
                process,
                lambda: self._ready(process.pid),
                name="The embedded PostgreSQL",
                port=port,
                log=self._log,
                timeout=120,
                fix=f"If the data in {self.data_dir} is damaged, move it away and run again.",
            )
        except EmbeddedServerError:
            self.stop()
            raise

    def _ready(self, pid: int) -> bool:
        """Our postmaster (not another on the port) says "ready" in its pid file."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0] == str(pid) and lines[7].strip() == "ready"

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, a checkpoint is written."""
        if self._process is not None:
            stop(self._process, signal.SIGINT, timeout=60)
            self._process = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postgres(pid: int) -> bool:
    if not _alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith("postgres")
    except OSError:
        return True  # no /proc (macOS): assume the worst rather than take its files
