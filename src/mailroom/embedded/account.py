"""Who runs the embedded PostgreSQL: the current user, or a system account under root.

PostgreSQL refuses to run as root. As root, `mailroom dev` runs it as the system account
POSTGRES_ACCOUNT (created if missing: no home, no login shell), owner of the data
directory. That account needs to reach the data directory and the binaries, so each
directory above them that others cannot traverse gets the traverse bit (o+x) only,
never read: nobody can list them who could not before.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

import structlog

from mailroom.embedded.child import RunAs
from mailroom.embedded.errors import EmbeddedServerError

log = structlog.get_logger(__name__)

POSTGRES_ACCOUNT = "mailroom-postgres"


def postgres_account() -> RunAs | None:
    """None when not root (PostgreSQL runs as the current user), else the system account."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_ACCOUNT)
    except KeyError:
        entry = _create_account()
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _create_account() -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedServerError(
            "PostgreSQL cannot run as root, and `useradd` is missing to create the system "
            f"account {POSTGRES_ACCOUNT}: create it yourself, or run `mailroom dev` as a "
            "normal user."
        )
    nologin = shutil.which("nologin") or "/usr/sbin/nologin"
    command = [useradd, "--system", "--user-group", "--no-create-home"]
    command += ["--home-dir", "/nonexistent", "--shell", nologin, POSTGRES_ACCOUNT]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise EmbeddedServerError(
            f"Cannot create the system account {POSTGRES_ACCOUNT} for PostgreSQL (it "
            f"refuses to run as root): {result.stderr.strip()}"
        )
    log.info("embedded.account_created", account=POSTGRES_ACCOUNT)
    return pwd.getpwnam(POSTGRES_ACCOUNT)


def grant_traverse(paths: Iterable[Path], account: RunAs) -> None:
    """Let ``account`` traverse every directory above ``paths`` (o+x where missing)."""
    seen: set[Path] = set()
    for path in paths:
        for directory in reversed(path.resolve().parents):
            if directory in seen:
                continue
            seen.add(directory)
            mode = directory.stat().st_mode
            if mode & stat.S_IXOTH or directory.stat().st_uid == account.uid:
                continue
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            log.info("embedded.traverse_granted", directory=str(directory), mode="o+x")


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
