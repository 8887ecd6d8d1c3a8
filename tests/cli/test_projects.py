"""`mailroom projects create/list`, and keys made in a project, against the test database."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from mailroom.cli import app
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.settings import Settings
from tests.conftest import api_client
from tests.support.cli import cli_environment
from tests.support.factories import email_in, insert_emails

runner = CliRunner()
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(monkeypatch, settings):
        yield


async def _cli(*args: str) -> Result:
    # The commands run their own event loop, so they cannot share the test's.
    return await asyncio.to_thread(runner.invoke, app, list(args))


def _name(prefix: str = "cli") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


async def _project(name: str) -> None:
    result = await _cli("projects", "create", name)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{name}\n"


async def _key(name: str, project: str, scopes: str = "send,logs:read") -> str:
    result = await _cli("keys", "create", "--name", name, "--project", project, "--scopes", scopes)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _rows(output: str) -> dict[str, list[str]]:
    """A listing's lines by their first cell."""
    return {line.split()[0]: line.split() for line in output.splitlines()[1:] if line.strip()}


async def test_create_then_list_shows_its_keys_and_emails(sessions: Sessions, clean: None) -> None:
    name = _name()
    await _project(name)
    listed = await _cli("projects", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split() == ["NAME", "KEYS", "EMAILS", "CREATED"]
    assert _rows(listed.stdout)[name][1:3] == ["0", "0"]
    assert "default" in _rows(listed.stdout)

    await _key(_name("k"), name)
    revoked = _name("k")
    await _key(revoked, name)
    assert (await _cli("keys", "revoke", revoked)).exit_code == 0
    async with sessions() as session:
        project_id = (
            await session.execute(text("SELECT id FROM projects WHERE name = :n"), {"n": name})
        ).scalar_one()
    await insert_emails(
        sessions, *(email_in(s, project_id=project_id) for s in ("sent", "failed", "queued"))
    )
    row = _rows((await _cli("projects", "list")).stdout)[name]
    assert row[1:3] == ["1", "3"]  # active keys only; emails from the counters
    assert row[3] == datetime.now(UTC).strftime("%Y-%m-%d")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Billing", "use 'billing'"),
        ("two words", "lower-case letters, digits"),
        ("default", "A project named 'default' exists."),
    ],
)
async def test_create_refuses_a_bad_or_taken_name(name: str, message: str) -> None:
    result = await _cli("projects", "create", name)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.output


async def test_a_key_for_an_unknown_project_is_refused_and_not_created(
    sessions: Sessions,
) -> None:
    name, project = _name("k"), _name("missing")
    result = await _cli("keys", "create", "--name", name, "--project", project)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"No project named {project!r}" in result.stderr
    assert "mailroom projects create" in result.stderr
    async with sessions() as session:
        found = await session.execute(text("SELECT 1 FROM api_keys WHERE name = :n"), {"n": name})
    assert found.first() is None
    # Nor was the project made on the way.
    assert project not in (await _cli("projects", "list")).stdout


async def test_a_key_of_a_project_sends_into_it_and_reads_only_it(
    settings: Settings, sessions: Sessions, clean: None
) -> None:
    project, name = _name(), _name("k")
    await _project(project)
    key = await _key(name, project)
    created = await _cli("keys", "list")
    assert _rows(created.stdout)[name][1] == project
    await insert_emails(sessions, email_in("sent", project_id=DEFAULT_PROJECT_ID))
    async with api_client(settings, key=key) as client:
        sent = await client.post(
            "/send", json={"to": "jane@example.com", "subject": "s", "text": "t"}
        )
        assert sent.status_code == 202, sent.text
        page = (await client.get("/logs/email")).json()
    assert [item["id"] for item in page["data"]] == [sent.json()["id"]]
    assert page["data"][0]["project"] == project


async def test_keys_list_by_project() -> None:
    project, mine = _name(), _name("k")
    await _project(project)
    await _key(mine, project)
    listed = await _cli("keys", "list", "--project", project)
    assert listed.exit_code == 0, listed.output
    assert list(_rows(listed.stdout)) == [mine]
    empty = _name()
    await _project(empty)
    none = await _cli("keys", "list", "--project", empty)
    assert none.exit_code == 0 and none.stdout == ""
    assert f"No keys in project {empty!r} yet" in none.stderr
    unknown = await _cli("keys", "list", "--project", _name("missing"))
    assert unknown.exit_code == 1 and "No project named" in unknown.stderr


async def test_an_admin_key_is_told_it_sees_every_project() -> None:
    result = await _cli("keys", "create", "--name", _name("k"), "--scopes", "logs:read,admin")
    assert result.exit_code == 0, result.output
    assert "it sees the emails of every project" in result.stderr
    plain = await _cli("keys", "create", "--name", _name("k"))
    assert "it sees the emails of project 'default' only" in plain.stderr


def test_projects_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["projects", "--help"])
    assert result.exit_code == 0
    for command in ("create", "list"):
        assert command in result.stdout
