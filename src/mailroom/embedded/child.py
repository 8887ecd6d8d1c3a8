"""A server started as a child that cannot outlive `mailroom dev`.

Each child gets a session of its own, so the Ctrl-C a terminal sends to `mailroom dev`'s
process group does not reach it: the servers must outlast the worker's drain and be
stopped after it. On Linux each child also asks the kernel for a signal when its parent
dies (prctl PR_SET_PDEATHSIG), so even a SIGKILL of `mailroom dev` stops it; the signal
chosen is the server's clean shutdown (PostgreSQL's fast shutdown, Valkey's SIGTERM), so
the data is consistent on the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailroom.embedded.errors import EmbeddedServerError

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a child runs as when `mailroom dev` runs as root."""

    uid: int
    gid: int


def _preexec(parent: int, death_signal: int, run_as: RunAs | None) -> Callable[[], None]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if _linux() else None

    def before_exec() -> None:
        # In the child between fork and exec: only async-signal-safe work, no imports.
        if run_as is not None:
            os.setgroups([])
            os.setgid(run_as.gid)
            os.setuid(run_as.uid)
        if libc is not None:
            # After setuid: a change of credentials clears the parent-death signal.
            libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return before_exec


def _linux() -> bool:
    return sys.platform.startswith("linux")


def spawn(
    argv: Sequence[str | Path],
    *,
    log: Path,
    death_signal: signal.Signals,
    run_as: RunAs | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log``. Call from the main thread: the
    parent-death signal follows the thread that forked, not the process."""
    with open(log, "ab") as output:
        try:
            return subprocess.Popen(  # noqa: S603 - argv is our own binaries and flags
                [str(arg) for arg in argv],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_preexec(os.getpid(), death_signal, run_as),
                env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except OSError as exc:
            raise EmbeddedServerError(f"Cannot start {argv[0]}: {exc.strerror}") from None


def run(
    argv: Sequence[str | Path], *, log: Path, run_as: RunAs | None = None, cwd: Path | None = None
) -> None:
    """Run a short command (initdb) to its end; EmbeddedServerError names its log on failure."""
    process = spawn(argv, log=log, death_signal=signal.SIGKILL, run_as=run_as, cwd=cwd)
    if process.wait() != 0:
        raise EmbeddedServerError(
            f"{Path(argv[0]).name} failed (exit code {process.returncode}):\n{tail(log)}"
        )


def stop(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` and wait; SIGKILL if it is still running after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(log: Path, lines: int = 8) -> str:
    """The last lines of a server's log, indented, to show with an error."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"    (no log at {log})"
    return "\n".join(f"    {line}" for line in text)
