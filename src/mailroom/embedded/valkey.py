"""The embedded Valkey (Redis protocol, reports Redis 7.2) on a free loopback port.

Its data directory keeps an append-only file, so the queue survives a restart (Redis
only dispatches: the database is the record, and the sweeper re-dispatches anything a
lost queue held). Ready means the process answering on the port is the one started
here (INFO's process_id), never a server that happened to be there.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from mailroom.embedded.binaries import Binaries
from mailroom.embedded.child import spawn, stop
from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.ports import HOST, PortTaken, free_port, wait_ready


class EmbeddedValkey:
    def __init__(
        self, binaries: Binaries, data_dir: Path, log_file: Path, *, throwaway: bool = False
    ) -> None:
        self._binary = binaries.valkey_server
        self.data_dir = data_dir.resolve()
        self._log = log_file
        self._throwaway = throwaway
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                self._start_on(free_port())
                return
            except PortTaken:
                if attempt == 2:
                    raise

    def _start_on(self, port: int) -> None:
        argv: list[str | Path] = [self._binary, "--bind", HOST, "--port", str(port)]
        argv += ["--dir", self.data_dir, "--daemonize", "no", "--save", ""]
        argv += ["--appendonly", "no" if self._throwaway else "yes"]
        # BullMQ needs every key it writes kept (it warns otherwise).
        argv += ["--maxmemory-policy", "noeviction", "--protected-mode", "yes"]
        process = spawn(argv, log=self._log, death_signal=signal.SIGTERM, cwd=self.data_dir)
        self._process, self.port = process, port
        try:
            wait_ready(
                process,
                lambda: _server_pid(port) == process.pid,
                name="The embedded Valkey",
                port=port,
                log=self._log,
                timeout=60,
                fix=f"If its files in {self.data_dir} are damaged, move them away and run again.",
            )
        except EmbeddedServerError:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM: Valkey flushes its append-only file and exits."""
        if self._process is not None:
            stop(self._process, signal.SIGTERM, timeout=30)
            self._process = None


def _server_pid(port: int) -> int | None:
    """The process_id INFO reports at the port; None while it loads or does not answer."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as connection:
            connection.sendall(b"INFO server\r\n")
            reply = connection.makefile("rb")
            header = reply.readline()
            if not header.startswith(b"$"):  # -LOADING, or not a Redis-protocol server
                return None
            body = reply.read(int(header[1:]))
    except (OSError, ValueError):
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None
