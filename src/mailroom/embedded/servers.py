"""The embedded pair under one directory: locked to one user of it, stopped however it ends."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mailroom.embedded.binaries import find_binaries
from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.postgres import EmbeddedPostgres
from mailroom.embedded.valkey import EmbeddedValkey


@dataclass(frozen=True)
class EmbeddedServers:
    postgres: EmbeddedPostgres | None
    valkey: EmbeddedValkey | None

    @property
    def pids(self) -> list[int]:
        servers = (self.postgres, self.valkey)
        return [s.pid for s in servers if s is not None and s.pid is not None]


@contextlib.contextmanager
def embedded_servers(
    home: Path, *, postgres: bool = True, valkey: bool = True, throwaway: bool = False
) -> Iterator[EmbeddedServers]:
    """Start the servers asked for, with data under ``home``; stop them on the way out.

    Call from the main thread (see mailroom.embedded.child). ``home`` is locked for as
    long as they run: a second user of it gets an error naming the first, and the lock
    goes with the process that held it, even when that process is killed.
    """
    binaries = find_binaries()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(home):
        pg = (
            EmbeddedPostgres(
                binaries, home / "postgres", home / "postgres.log", throwaway=throwaway
            )
            if postgres
            else None
        )
        vk = (
            EmbeddedValkey(binaries, home / "valkey", home / "valkey.log", throwaway=throwaway)
            if valkey
            else None
        )
        try:
            if pg is not None:
                pg.start()
            if vk is not None:
                vk.start()
            yield EmbeddedServers(pg, vk)
        finally:
            with _uninterrupted():
                if vk is not None:
                    vk.stop()
                if pg is not None:
                    pg.stop()


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    lock_path = home / "lock"
    lock: IO[str] = open(lock_path, "a+")  # noqa: SIM115 - held until the servers stop
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise EmbeddedServerError(
                f"Another `mailroom dev` (pid {holder}) is running here with its servers in "
                f"{home}/: stop it (Ctrl-C in its terminal) or run this one from another "
                "directory."
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield
    finally:
        lock.close()  # closing the file releases the lock


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ignore Ctrl-C while the servers stop: a second press must not leave one running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
