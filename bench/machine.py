"""What else the machine is doing: the benchmark shares two cores with everything else."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

QUIET_BUSY = 0.25  # a machine at most this busy (fraction of all cores) counts as quiet
QUIET_WAIT_S = 5.0  # how long to wait for quiet before a run, at most


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_fraction(interval: float = 1.0) -> float:
    """How busy all cores were over the next `interval` seconds (0.0 to 1.0)."""
    busy0, total0 = _cpu_times()
    time.sleep(interval)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet() -> float:
    """Before a run: wait (at most QUIET_WAIT_S) until the machine is at most QUIET_BUSY
    busy, since anything else running skews every figure. Returns the last busy fraction
    seen, which the report keeps next to the run."""
    deadline = time.monotonic() + QUIET_WAIT_S
    busy = busy_fraction()
    while busy > QUIET_BUSY and time.monotonic() < deadline:
        busy = busy_fraction()
    return busy


def describe() -> dict[str, object]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }
