"""Free loopback ports, and waiting for a child server to be ready on one."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mailroom.embedded.child import tail
from mailroom.embedded.errors import EmbeddedServerError

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on now, below the kernel's ephemeral range.

    Ports the kernel hands out for ``bind(port 0)`` and for outgoing connections come from
    that range, so a port chosen below it cannot be taken meanwhile by another program
    picking "any free port" (the API's or the SMTP inbox's, say). The child binds it a
    moment later; a race lost anyway shows as "address in use" and the caller picks again.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(_LOWEST, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        found: int = probe.getsockname()[1]
    return found


_LOWEST = 20_000


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
    return low if low > _LOWEST + 1000 else 32_768


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


class PortTaken(EmbeddedServerError):
    """The child could not bind its port (someone took it meanwhile)."""


def wait_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    name: str,
    port: int,
    log: Path,
    timeout: float,
    fix: str,
) -> None:
    """Poll ``ready`` until it holds; the child's exit or the deadline is an error with
    its log's last lines."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            text = tail(log, 12)
            if "already in use" in text or "Address in use" in text:
                raise PortTaken(f"{name} could not listen on {HOST}:{port}: the port is in use.")
            raise EmbeddedServerError(
                f"{name} stopped while starting (exit code {process.returncode}); "
                f"its log ({log}) ends with:\n{text}\n{fix}"
            )
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"{name} did not become ready within {timeout:.0f} s; its log ({log}) "
                f"ends with:\n{tail(log, 12)}\n{fix}"
            )
        time.sleep(0.02)
