"""Subprocesses a harness owns: start, signal, kill, wait for a port, always clean up."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class ToolMissing(RuntimeError):
    """A program is absent and could not be installed; the message says how to get it."""


def binary(name: str, package: str) -> str:
    """The path of a program on PATH, or ToolMissing naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not on PATH (Debian package {package})")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30.0, proc: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive:
            raise RuntimeError(f"{proc.name} exited (code {proc.returncode}); see {proc.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Process:
    """One subprocess, its output in a log file; restartable with the same command."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            # A session of its own: a Ctrl-C at the terminal reaches the harness only,
            # which then stops everything in order.
            self._popen = subprocess.Popen(  # noqa: S603 - argv built by the harness
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def signal(self, signum: signal.Signals) -> None:
        if self.alive and self._popen is not None:
            self._popen.send_signal(signum)

    def kill9(self) -> None:
        if self.alive and self._popen is not None:
            os.kill(self._popen.pid, signal.SIGKILL)
            self._popen.wait()

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
