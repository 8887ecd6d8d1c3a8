"""A data directory the embedded PostgreSQL cannot use is an error that says what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.embedded.account import postgres_account
from mailroom.embedded.binaries import find_binaries, postgres_major_version, unsupported
from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.postgres import EmbeddedPostgres


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """An existing data directory owned by whoever the embedded PostgreSQL runs as."""
    home = Path(tempfile.mkdtemp(prefix="mailroom-pg-check-"))
    data = home / "postgres"
    data.mkdir(mode=0o700)
    account = postgres_account()
    if account is not None:
        os.chown(data, account.uid, account.gid)
    yield data
    shutil.rmtree(home, ignore_errors=True)


def _server(data: Path) -> EmbeddedPostgres:
    return EmbeddedPostgres(find_binaries(), data, data.parent / "postgres.log")


def test_a_directory_of_another_major_version_is_refused_with_the_way_out(
    data_dir: Path,
) -> None:
    (data_dir / "PG_VERSION").write_text("15\n")
    (data_dir / "base").mkdir()
    with pytest.raises(EmbeddedServerError) as raised:
        _server(data_dir).start()
    wanted = postgres_major_version(find_binaries())
    assert f"holds PostgreSQL 15 data, and the embedded server is PostgreSQL {wanted}" in str(
        raised.value
    )
    assert "pg_dump" in str(raised.value)
    assert (data_dir / "base").exists()  # nothing removed


def test_a_directory_that_is_not_postgresql_data_is_left_alone(data_dir: Path) -> None:
    (data_dir / "notes.txt").write_text("mine\n")
    with pytest.raises(EmbeddedServerError, match="not a PostgreSQL data directory"):
        _server(data_dir).start()
    assert (data_dir / "notes.txt").read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory away")
def test_a_directory_owned_by_someone_else_is_refused_with_the_owner_named(
    data_dir: Path,
) -> None:
    os.chown(data_dir, 65534, 65534)  # nobody
    (data_dir / "PG_VERSION").write_text("18\n")
    with pytest.raises(EmbeddedServerError) as raised:
        _server(data_dir).start()
    assert "belongs to nobody" in str(raised.value)
    assert "chown -R" in str(raised.value)


def test_a_postgresql_still_running_on_the_directory_is_not_taken_over(
    data_dir: Path,
) -> None:
    wanted = postgres_major_version(find_binaries())
    (data_dir / "PG_VERSION").write_text(f"{wanted}\n")
    # A process whose name is "postgres", holding the directory's pid file.
    (data_dir.parent / "bin").mkdir()
    impostor = data_dir.parent / "bin" / "postgres"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", impostor)
    process = subprocess.Popen([str(impostor), "30"])
    try:
        (data_dir / "postmaster.pid").write_text(f"{process.pid}\n{data_dir}\n")
        with pytest.raises(EmbeddedServerError) as raised:
            _server(data_dir).start()
    finally:
        process.kill()
        process.wait()
    assert f"A PostgreSQL server (pid {process.pid}) is already running" in str(raised.value)
    assert f"kill -INT {process.pid}" in str(raised.value)
    assert (data_dir / "postmaster.pid").exists()


def test_a_stale_pid_file_naming_another_program_is_removed(data_dir: Path) -> None:
    wanted = postgres_major_version(find_binaries())
    (data_dir / "PG_VERSION").write_text(f"{wanted}\n")
    (data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{data_dir}\n")  # not a postgres
    with pytest.raises(EmbeddedServerError) as raised:  # the rest of the directory is missing
        _server(data_dir).start()
    assert not (data_dir / "postmaster.pid").exists()
    assert "stopped while starting" in str(raised.value)
    assert "move it away" in str(raised.value)


@pytest.mark.parametrize(
    ("system", "machine", "libc"),
    [("linux", "x86_64", ""), ("linux", "aarch64", "glibc"), ("freebsd14", "amd64", "")],
)
def test_platforms_without_the_wheels_are_told_what_to_install(
    system: str, machine: str, libc: str
) -> None:
    reason = unsupported(system, machine, libc)
    assert reason is not None
    assert f"not available for {system} on {machine}" in reason
    assert "Install PostgreSQL" in reason and "docker compose up" in reason


@pytest.mark.parametrize(
    ("system", "machine", "libc"), [("linux", "x86_64", "glibc"), ("darwin", "arm64", "")]
)
def test_platforms_with_the_wheels_are_supported(system: str, machine: str, libc: str) -> None:
    assert unsupported(system, machine, libc) is None
