"""`mailroom dev --embedded` as a real process: its servers die with it, its data stays."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from mailroom.embedded.ports import answers
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

_DROPPED = ("DATABASE_URL", "REDIS_URL", "SMTP_HOST", "QUEUE_PREFIX")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory outside pytest's workdir: pytest makes /tmp/pytest-of-USER mode 700
    whenever a session starts, which would shut out the account PostgreSQL runs as
    under root."""
    path = Path(tempfile.mkdtemp(prefix="mailroom-dev-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Dev:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.output)

    def ports(self) -> list[int]:
        found = re.findall(r"embedded.*?//(?:postgres@)?127\.0\.0\.1:(\d+)/", self.log)
        return [int(port) for port in found]

    async def exited(self, timeout: float = 60) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await self._reader
        return code


async def _start(cwd: Path) -> Dev:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(WORKER_METRICS_PORT="0", WORKER_HEARTBEAT_FILE="", LOG_FORMAT="json")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mailroom", "dev", "--embedded"),
        *("--port", str(port), "--smtp-port", str(free_port())),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a terminal's job has
    )
    return Dev(process, port)


@asynccontextmanager
async def running(cwd: Path) -> AsyncIterator[Dev]:
    dev = await _start(cwd)
    try:

        async def serving() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{dev.base}/health")).status_code == 200
            except httpx.TransportError:
                if dev.process.returncode is not None:
                    raise AssertionError(f"mailroom dev exited:\n{dev.log}") from None
                return False

        await eventually(serving, bool, timeout=90, what="mailroom dev to serve")
        yield dev
    finally:
        if dev.process.returncode is None:
            dev.process.kill()
            await dev.exited()


def _children(parent: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _gone(pids: list[int], ports: list[int]) -> bool:
    return not any(_running(pid) for pid in pids) and not any(
        answers("127.0.0.1", port) for port in ports
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_servers_die_with_a_killed_dev_and_a_restart_finds_the_data(
    workdir: Path,
) -> None:
    async with running(workdir) as first:
        key = (workdir / ".mailroom-dev-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=first.base, headers=headers) as client:
            body = {"to": "jane@example.com", "subject": "Kept", "text": "Across restarts."}
            sent = await client.post("/send", json=body)
            assert sent.status_code == 202, sent.text

            async def inbox() -> list[dict[str, object]]:
                listed: list[dict[str, object]] = (await client.get("/dev/inbox")).json()
                return listed

            await eventually(inbox, lambda m: len(m) == 1, timeout=30, what="the inbox")

        # A second one in the same directory names the first and starts nothing.
        second = await _start(workdir)
        assert await second.exited() == 1
        assert f"Another `mailroom dev` (pid {first.process.pid})" in second.log

        servers, ports = _children(first.process.pid), first.ports()
        assert len(servers) == 2 and len(ports) == 2, first.log
        first.process.kill()  # SIGKILL: no clean-up of its own
        await first.exited()
        await eventually(lambda: _gone(servers, ports), bool, timeout=60, what="no orphan")

    postgres_log = workdir / ".mailroom" / "postgres.log"
    before = len(postgres_log.read_text())
    async with running(workdir) as again:
        async with httpx.AsyncClient(base_url=again.base, headers=headers) as client:
            logged = (await client.get("/logs/email")).json()
        assert [(e["subject"], e["status"]) for e in logged["data"]] == [("Kept", "sent")]
        restart = postgres_log.read_text()[before:]
        assert "database system was shut down at" in restart, restart
        assert "recovery" not in restart, restart

        servers, ports = _children(again.process.pid), again.ports()
        os.killpg(again.process.pid, signal.SIGINT)  # Ctrl-C as a terminal sends it
        assert await again.exited() == 0, again.log
        assert await _gone(servers, ports), again.log
