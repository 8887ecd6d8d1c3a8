"""Postfix's smtp-sink as a test server: a real SMTP implementation with switchable behaviour.

The program comes from Debian's postfix package, unpacked by ``bench.tools`` (apt-get
download + dpkg -x, no MTA installed), under a lock so parallel test processes unpack it
once. Each ``SmtpSink`` is its own process on a free port; with ``dump=True`` it writes
every transaction to a file (``-d``): the EHLO name, MAIL and RCPT arguments and the
message exactly as received, which is how the tests see what was sent.

Useful switches (smtp-sink(1)): ``-8`` no 8BITMIME, ``-a`` no AUTH, ``-p`` no PIPELINING,
``-Q CMD`` 421 and hang up after CMD, ``-r CMD`` soft-reject CMD (``-b`` sets the reply),
``-q CMD`` hang up without a reply, ``-W CMD:SECONDS`` answer CMD that much later.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from bench.config import CACHE_DIR
from bench.tools import Postfix, ensure_postfix


@contextmanager
def _unpack_lock() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "postfix.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def postfix() -> Postfix:
    """smtp-sink's package, unpacked (once per machine); skipped where no Debian tools exist."""
    if shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None:
        pytest.skip("smtp-sink comes from Debian's postfix package: apt-get and dpkg-deb needed")
    with _unpack_lock():
        return ensure_postfix()


@dataclass(frozen=True)
class Dump:
    """One transaction as smtp-sink saw it."""

    helo: str
    mail: str  # the MAIL command's arguments: "FROM:<a@b> SIZE=123 ..."
    rcpts: tuple[str, ...]
    raw: bytes  # the message as received (dot-stuffing undone), LF line endings

    def message(self) -> Message:
        return message_from_bytes(self.raw)


class SmtpSink:
    def __init__(self, process: asyncio.subprocess.Process, port: int, folder: Path) -> None:
        self.process = process
        self.host = "127.0.0.1"
        self.port = port
        self._folder = folder

    def dumps(self) -> list[Dump]:
        """Every transaction dumped so far, oldest first."""
        files = sorted(self._folder.glob("*"), key=lambda p: p.stat().st_mtime_ns)
        return [_parse(path.read_bytes()) for path in files if path.is_file()]


def _parse(data: bytes) -> Dump:
    fields: dict[str, list[str]] = {}
    rest = data
    # smtp-sink's own lines come first and end with its three-line Received: header.
    while rest:
        line, _, rest = rest.partition(b"\n")
        name, _, value = line.decode("utf-8", "replace").partition(": ")
        fields.setdefault(name, []).append(value)
        if name == "Received":
            rest = rest.split(b"\n", 2)[2]  # its two continuation lines
            break
    return Dump(
        helo=fields.get("X-Helo-Args", [""])[0],
        mail=fields.get("X-Mail-Args", [""])[0],
        rcpts=tuple(fields.get("X-Rcpt-Args", [])),
        raw=rest.removesuffix(b"\n"),  # the empty line smtp-sink adds
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _listening(port: int, process: asyncio.subprocess.Process) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline and process.returncode is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return True
    return False


@asynccontextmanager
async def smtp_sink(*flags: str, dump: bool = True) -> AsyncIterator[SmtpSink]:
    """smtp-sink with ``flags`` on a free port, stopped (and its dumps removed) at the end."""
    tools = postfix()
    # Started as root, smtp-sink writes as nobody: a folder of its own under /tmp, which
    # nobody can reach (pytest's tmp_path is private to root).
    dumps = Path(tempfile.mkdtemp(prefix="mailroom-sink-"))
    dumps.chmod(0o777)  # noqa: ASYNC240 - a folder made a line above, no wait involved
    try:
        async with _running(tools, dumps, flags, dump) as sink:
            yield sink
    finally:
        shutil.rmtree(dumps, ignore_errors=True)


@asynccontextmanager
async def _running(
    tools: Postfix, dumps: Path, flags: tuple[str, ...], dump: bool
) -> AsyncIterator[SmtpSink]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    record = ["-d", f"{dumps}/%H%M%S."] if dump else []
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        process = await asyncio.create_subprocess_exec(
            tools.sink,
            *user,
            *record,
            *flags,
            f"127.0.0.1:{port}",
            "100",
            env=tools.env(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if await _listening(port, process):
            break
        if process.returncode is None:
            process.kill()
        await process.wait()
    else:
        raise AssertionError("smtp-sink did not start listening")
    try:
        yield SmtpSink(process, port, dumps)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
