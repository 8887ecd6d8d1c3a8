"""wrk with bench/send.lua: POST /send for a duration, or exactly N times."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from harness.procs import Process

from bench.config import HTTP_CONNECTIONS, WRK_THREADS

SCRIPT = Path(__file__).with_name("send.lua")
MARKER = "BENCH_JSON "
# wrk always runs for its whole -d; a counted run is interrupted once every thread is done,
# so this is only a ceiling.
COUNTED_RUN_CEILING_S = 3600
EXIT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    accepted: int  # 202 answers
    limited: int  # 429 answers
    non_2xx: int
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.duration_s if self.duration_s else 0.0


def parse(output: str) -> WrkResult:
    """The JSON line send.lua's done() prints; raises with wrk's output if there is none."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            errors = data["errors"]
            latency = data["latency_us"]
            return WrkResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                accepted=data["accepted"],
                limited=data["limited"],
                non_2xx=errors["status"],
                socket_errors=errors["connect"]
                + errors["read"]
                + errors["write"]
                + errors["timeout"],
                p50_ms=latency["p50"] / 1000,
                p90_ms=latency["p90"] / 1000,
                p99_ms=latency["p99"] / 1000,
                max_ms=latency["max"] / 1000,
            )
    raise RuntimeError(f"wrk printed no result:\n{output[-3000:]}")


class Wrk:
    """One wrk process posting emails to an API."""

    def __init__(self, wrk: str, api_url: str, api_key: str, workdir: Path) -> None:
        self.wrk = wrk
        self.api_url = api_url
        self.api_key = api_key
        self.workdir = workdir
        self.done_dir = workdir / "wrk-done"
        self._proc: Process | None = None

    def _argv(self, duration_s: int) -> list[str]:
        return [
            self.wrk,
            f"-t{WRK_THREADS}",
            f"-c{HTTP_CONNECTIONS}",
            f"-d{duration_s}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(SCRIPT),
            "-H",
            f"Authorization: Bearer {self.api_key}",
            self.api_url,
        ]

    def start(self, *, total: int, duration_s: int) -> None:
        """Start posting: `total` emails in all (0: as many as fit in `duration_s`)."""
        self.done_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "BENCH_TOTAL": str(total),
                "BENCH_THREADS": str(WRK_THREADS),
                "BENCH_DONE_DIR": str(self.done_dir),
            }
        )
        self._proc = Process("wrk", self._argv(duration_s), env, self.workdir / "wrk.log")
        self._proc.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive

    @property
    def threads_done(self) -> int:
        return len(list(self.done_dir.glob("thread-*")))

    def finish(self) -> WrkResult:
        """Interrupt wrk if it still runs (it prints its summary on SIGINT), then parse."""
        proc = self._proc
        assert proc is not None
        if proc.alive:
            proc.signal(signal.SIGINT)
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while proc.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.stop(timeout=5)
        return parse(proc.log.read_text(encoding="utf-8", errors="replace"))

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=5)


def run_for(wrk: str, api_url: str, api_key: str, workdir: Path, seconds: int) -> WrkResult:
    """POST /send for `seconds` at HTTP_CONNECTIONS connections."""
    runner = Wrk(wrk, api_url, api_key, workdir)
    runner.start(total=0, duration_s=seconds)
    deadline = time.monotonic() + seconds + EXIT_TIMEOUT_S
    try:
        while runner.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        return runner.finish()
    finally:
        runner.stop()
