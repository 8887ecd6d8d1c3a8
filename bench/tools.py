"""The outside tools the benchmark drives: wrk, and Postfix's smtp-sink and smtp-source.

wrk comes from Debian's package. Postfix is not installed (that would put an MTA on the
machine, with its own service on port 25): its .deb is downloaded with `apt-get download`
and unpacked with `dpkg -x` into a cache folder, and its two test programs are run from
there with LD_LIBRARY_PATH pointing at Postfix's private libraries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.procs import ToolMissing

from bench.config import CACHE_DIR


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # No terminal questions from apt or dpkg: they would wait forever for an answer.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(  # noqa: S603 - argv built here
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def _apt(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """apt-get with the given arguments; on failure, once more after `apt-get update`
    (a fresh machine may have no package lists yet)."""
    argv = ["apt-get", "-q", *args]
    done = _run(argv, cwd)
    if done.returncode != 0:
        _run(["apt-get", "-q", "update"])
        done = _run(argv, cwd)
    return done


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package if it is missing and we are root."""
    path = shutil.which("wrk")
    if path is not None:
        return path
    if not _is_root():
        raise ToolMissing("wrk is not installed: run `sudo apt-get install wrk`")
    print("bench: installing wrk (apt-get install wrk)", flush=True)
    done = _apt(["install", "-y", "--no-install-recommends", "wrk"])
    path = shutil.which("wrk")
    if done.returncode != 0 or path is None:
        raise ToolMissing(f"could not install wrk with apt-get:\n{done.stderr.strip()[-2000:]}")
    return path


@dataclass(frozen=True)
class Postfix:
    """smtp-sink and smtp-source from an unpacked Postfix package."""

    root: Path

    @property
    def sink(self) -> str:
        return str(self.root / "usr" / "sbin" / "smtp-sink")

    @property
    def source(self) -> str:
        return str(self.root / "usr" / "sbin" / "smtp-source")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = str(self.root / "usr" / "lib" / "postfix")
        return env

    def sink_argv(self, port: int) -> list[str]:
        # smtp-sink refuses to run as root unless told which user to drop to.
        user = ["-u", "nobody"] if _is_root() else []
        # The last argument is the listen backlog: deep enough for every pooled connection.
        return [self.sink, *user, f"127.0.0.1:{port}", "1000"]


def _missing_libraries(postfix: Postfix) -> list[str]:
    missing: list[str] = []
    for binary in (postfix.sink, postfix.source):
        done = subprocess.run(  # noqa: S603
            ["ldd", binary],  # noqa: S607
            env=postfix.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        missing += [line.split()[0] for line in done.stdout.splitlines() if "not found" in line]
    return sorted(set(missing))


def _library_dependencies(deb: Path) -> list[str]:
    """The shared-library packages the Postfix .deb depends on (its Depends field)."""
    done = _run(["dpkg-deb", "-f", str(deb), "Depends"])
    names = []
    for clause in done.stdout.split(","):
        name = clause.strip().split(" ")[0].split(":")[0]
        if name.startswith("lib"):
            names.append(name)
    return names


def ensure_postfix() -> Postfix:
    """smtp-sink and smtp-source, unpacked from Debian's postfix package into the cache."""
    postfix = Postfix(CACHE_DIR / "postfix")
    unpacked = Path(postfix.sink).exists() and Path(postfix.source).exists()
    if unpacked and not _missing_libraries(postfix):
        return postfix
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise ToolMissing(
                f"{tool} is missing: smtp-sink/smtp-source come from Debian's postfix package"
            )
    downloads = CACHE_DIR / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    debs = sorted(downloads.glob("postfix_*.deb"))
    if not debs:
        print("bench: fetching smtp-sink/smtp-source (apt-get download postfix)", flush=True)
        done = _apt(["download", "postfix"], cwd=downloads)
        debs = sorted(downloads.glob("postfix_*.deb"))
        if done.returncode != 0 or not debs:
            raise ToolMissing(f"`apt-get download postfix` failed:\n{done.stderr.strip()[-2000:]}")
    deb = debs[-1]
    shutil.rmtree(postfix.root, ignore_errors=True)
    postfix.root.mkdir(parents=True)
    done = _run(["dpkg-deb", "-x", str(deb), str(postfix.root)])
    if done.returncode != 0:
        raise ToolMissing(f"dpkg-deb -x {deb} failed:\n{done.stderr.strip()}")
    missing = _missing_libraries(postfix)
    if missing and _is_root():
        # Only the shared libraries Postfix links against, not Postfix itself.
        _apt(["install", "-y", "--no-install-recommends", *_library_dependencies(deb)])
        missing = _missing_libraries(postfix)
    if missing:
        raise ToolMissing(
            f"smtp-sink needs libraries that are not installed: {', '.join(missing)} "
            "(install the lib* packages that `apt-cache depends postfix` lists)"
        )
    return postfix
