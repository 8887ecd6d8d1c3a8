"""`make run` on a fresh clone with the embedded servers: time to the first email, restart
time, and the memory of the embedded pair when idle.

The clone is of this repository's HEAD into a temporary directory, with uv's cache as it
is (the dependencies downloaded, not installed). `make run ARGS=--embedded` forces the
embedded servers, as on a machine where nothing answers at 5432/6379, and gives it free
ports (the defaults may be taken on a shared machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import ROOT
from bench.report import MISS, PASS, Row
from bench.rss import descendants
from mailroom.embedded.ports import free_port

_DROPPED = ("DATABASE_URL", "REDIS_URL", "SMTP_HOST", "VIRTUAL_ENV")


@dataclass
class EmbeddedResult:
    first_email_s: float = 0.0
    restart_s: float = 0.0
    idle_rss_mb: dict[str, float] = field(default_factory=dict)
    idle_pss_mb: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - a loopback URL of our own
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return response.status, response.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _post_send(base: str, key: str) -> int:
    body = json.dumps({"to": "jane@example.com", "subject": "Hi", "text": "It works."})
    request = urllib.request.Request(  # noqa: S310
        f"{base}/send", data=body.encode(), method="POST"
    )
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        status: int = response.status
        return status


def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _memory_kb(pid: int, field_name: str, source: str) -> int:
    try:
        text = Path(f"/proc/{pid}/{source}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _server_trees(root: int) -> dict[str, list[int]]:
    """The embedded PostgreSQL's processes and Valkey's, below `mailroom dev` (`root`)."""
    trees: dict[str, list[int]] = {"postgres": [], "valkey": []}
    for pid in descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        # Valkey rewrites its command line to "valkey-server 127.0.0.1:PORT".
        if command.split(" ", 1)[0].endswith("valkey-server"):
            trees["valkey"].append(pid)
        elif command.endswith("/bin/postgres"):
            trees["postgres"] += [pid, *descendants(pid)]
    return trees


class _MakeRun:
    def __init__(self, clone: Path, port: int, smtp_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        env.update(WORKER_METRICS_PORT="0", WORKER_HEARTBEAT_FILE="")
        args = f"--embedded --port {port} --smtp-port {smtp_port}"
        self.base = f"http://127.0.0.1:{port}"
        self.log = (clone / "make-run.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            ["make", "--no-print-directory", "run", f"ARGS={args}"],  # noqa: S607
            cwd=clone,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group, for Ctrl-C as a terminal sends it
        )

    def serving(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"make run exited with {self.process.returncode}")
        return _get(f"{self.base}/health")[0] == 200

    def dev_pid(self) -> int:
        for pid in descendants(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"mailroom\0dev" in command or b"mailroom dev" in command:
                return pid
        raise RuntimeError("no mailroom dev process under make run")

    def ctrl_c(self) -> str:
        """Ctrl-C to the group; what `mailroom dev` logged as it stopped (make itself
        then ends by the same SIGINT, as make does)."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=60)
        self.log.close()
        return Path(self.log.name).read_text(errors="replace")


def run_embedded() -> EmbeddedResult:
    result = EmbeddedResult()
    home = Path(tempfile.mkdtemp(prefix="mailroom-bench-embedded-"))
    clone = home / "mailroom"
    subprocess.run(  # noqa: S603
        ["git", "clone", "--quiet", str(ROOT), str(clone)],  # noqa: S607
        check=True,
    )
    port, smtp_port = free_port(), free_port()
    try:
        began = time.monotonic()
        first = _MakeRun(clone, port, smtp_port)
        try:
            _wait(first.serving, 300, "make run to serve")
            key = (clone / ".mailroom-dev-key").read_text().strip()
            assert _post_send(first.base, key) == 202

            def arrived() -> bool:
                status, body = _get(f"{first.base}/dev/inbox", key)
                return status == 200 and len(json.loads(body)) == 1

            _wait(arrived, 60, "the email in the dev inbox")
            result.first_email_s = round(time.monotonic() - began, 2)
            time.sleep(10)  # idle: no request, no job
            trees = _server_trees(first.dev_pid())
            for name, pids in trees.items():
                result.idle_rss_mb[name] = round(
                    sum(_memory_kb(p, "VmRSS", "status") for p in pids) / 1024, 1
                )
                result.idle_pss_mb[name] = round(
                    sum(_memory_kb(p, "Pss", "smaps_rollup") for p in pids) / 1024, 1
                )
        finally:
            output = first.ctrl_c()
        if "dev.stopped" not in output or "Traceback" in output:
            result.problems.append("mailroom dev did not stop cleanly on one Ctrl-C")

        began = time.monotonic()
        again = _MakeRun(clone, port, smtp_port)
        try:
            _wait(again.serving, 120, "make run to serve again")
            result.restart_s = round(time.monotonic() - began, 2)
        finally:
            again.ctrl_c()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return result


def embedded_rows(result: EmbeddedResult) -> list[Row]:
    rss = sum(result.idle_rss_mb.values())
    pss = sum(result.idle_pss_mb.values())
    parts = ", ".join(f"{name} {mb:.0f}" for name, mb in result.idle_rss_mb.items())
    return [
        Row(
            "embedded: make run to first email",
            f"{result.first_email_s:.1f} s",
            "fresh clone, dependencies downloaded; install, initdb, migrate, send",
            "< 15 s",
            PASS if result.first_email_s < 15 else MISS,
        ),
        Row(
            "embedded: restart to serving",
            f"{result.restart_s:.1f} s",
            "make run again after one Ctrl-C",
            "< 5 s",
            PASS if result.restart_s < 5 else MISS,
        ),
        Row(
            "embedded: idle memory of the pair",
            f"{rss:.0f} MB RSS",
            f"summed over processes ({parts}); {pss:.0f} MB PSS (shared pages counted once)",
            "< 150 MB",
            PASS if rss < 150 else MISS,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(run_embedded().__dict__, indent=2))
