"""Peak resident memory (VmHWM) of a process and of the processes it started."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _parent(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat.rpartition(")")[2].split()
    return int(fields[1])


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (uvicorn's worker processes, for one)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of one process in MB, or None if it is gone."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def tree_peak_rss_mb(pid: int) -> dict[int, float]:
    """VmHWM of `pid` and each of its descendants, by pid (read before stopping them:
    the high-water mark is kept by the kernel for the life of the process)."""
    peaks: dict[int, float] = {}
    for each in [pid, *descendants(pid)]:
        peak = peak_rss_mb(each)
        if peak is not None:
            peaks[each] = peak
    return peaks
