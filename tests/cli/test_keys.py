"""`mailroom keys create/list/revoke` against the test database."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from mailroom.cli import app
from mailroom.settings import Settings
from tests.conftest import api_client
from tests.support.cli import cli_environment

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(monkeypatch, settings):
        yield


async def _cli(*args: str) -> Result:
    # The commands run their own event loop, so they cannot share the test's.
    return await asyncio.to_thread(runner.invoke, app, list(args))


def _name() -> str:
    return f"cli-{secrets.token_hex(6)}"


async def _create(name: str, scopes: str = "send") -> str:
    result = await _cli("keys", "create", "--name", name, "--scopes", scopes)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def _settings_without_cache(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(api_key_cache_seconds=0)


async def test_create_prints_the_key_alone_on_stdout(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    name = _name()
    result = await _cli("keys", "create", "--name", name, "--scopes", "send")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    key = lines[0]
    assert key == key.strip()
    assert key.startswith("mr_")
    assert len(key.removeprefix("mr_")) * 6 >= 128
    # The human-readable note goes to stderr, with the prefix but never the key.
    assert name in result.stderr
    assert key[:11] in result.stderr
    assert key not in result.stderr
    async with sessions() as session:
        scopes = (
            await session.execute(
                text("SELECT scopes FROM api_keys WHERE name = :name AND revoked_at IS NULL"),
                {"name": name},
            )
        ).scalar_one()
    assert scopes == ["send"]


async def test_a_created_key_works_against_the_api(settings: Settings, clean: None) -> None:
    key = await _create(_name(), "send")
    async with api_client(settings, key=key) as client:
        response = await client.post("/send", json=VALID)
        assert response.status_code == 202, response.text
        # Only the scope it was given.
        assert (await client.get("/logs/email")).status_code == 403


async def test_create_with_default_scopes_can_send_and_read(
    settings: Settings, clean: None
) -> None:
    result = await _cli("keys", "create", "--name", _name())
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    async with api_client(settings, key=key) as client:
        assert (await client.post("/send", json=VALID)).status_code == 202
        assert (await client.get("/logs/email")).status_code == 200


async def test_a_duplicate_active_name_is_refused() -> None:
    name = _name()
    first = await _create(name)
    result = await _cli("keys", "create", "--name", name, "--scopes", "send")
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert name in result.stderr
    assert "exists" in result.stderr
    assert first not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("scopes", ["sned", "send,root", ",", ""])
async def test_an_unknown_or_empty_scope_is_a_usage_error(scopes: str) -> None:
    result = await _cli("keys", "create", "--name", _name(), "--scopes", scopes)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "--scopes" in result.stderr
    assert "Traceback" not in result.output


async def test_an_unknown_scope_creates_no_key(sessions: async_sessionmaker[AsyncSession]) -> None:
    name = _name()
    result = await _cli("keys", "create", "--name", name, "--scopes", "send,root")
    assert result.exit_code == 2
    assert "root" in result.stderr
    async with sessions() as session:
        count = (
            await session.execute(
                text("SELECT count(*) FROM api_keys WHERE name = :name"), {"name": name}
            )
        ).scalar_one()
    assert count == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(("--rate-limit", "lots"), "lots", id="bad-rate-limit"),
        pytest.param(("--rate-limit", "0/second"), "0/second", id="zero-rate-limit"),
    ],
)
async def test_an_invalid_rate_limit_creates_no_key(
    sessions: async_sessionmaker[AsyncSession], args: tuple[str, ...], says: str
) -> None:
    name = _name()
    result = await _cli("keys", "create", "--name", name, "--scopes", "send", *args)
    assert result.exit_code != 0, result.output
    assert result.stdout == ""
    assert says in result.stderr
    assert "Traceback" not in result.output
    async with sessions() as session:
        count = (
            await session.execute(
                text("SELECT count(*) FROM api_keys WHERE name = :name"), {"name": name}
            )
        ).scalar_one()
    assert count == 0


async def test_a_key_with_its_own_rate_limit(
    settings_factory: Callable[..., Settings], clean: None
) -> None:
    result = await _cli(
        "keys", "create", "--name", _name(), "--scopes", "send", "--rate-limit", "2/minute"
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    async with api_client(settings_factory(), key=key) as client:
        statuses = [(await client.post("/send", json=VALID)).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]


async def test_list_shows_name_prefix_and_scopes_but_never_the_key() -> None:
    name = _name()
    key = await _create(name, "send,logs:read")
    result = await _cli("keys", "list")
    assert result.exit_code == 0, result.output
    assert key not in result.output
    assert key[11:] not in result.output
    header = result.stdout.splitlines()[0]
    for column in ("NAME", "PROJECT", "PREFIX", "SCOPES", "CREATED", "LAST USED", "REVOKED"):
        assert column in header
    rows = [line for line in result.stdout.splitlines() if line.startswith(name + " ")]
    assert len(rows) == 1, result.stdout
    cells = rows[0].split()
    assert cells[0] == name
    assert cells[1] == "default"
    assert cells[2] == key[:11]
    assert cells[3] == "send,logs:read"


async def test_revoke_by_name_stops_the_key(
    settings_factory: Callable[..., Settings], clean: None
) -> None:
    name = _name()
    key = await _create(name)
    async with api_client(_settings_without_cache(settings_factory), key=key) as client:
        assert (await client.post("/send", json=VALID)).status_code == 202

        result = await _cli("keys", "revoke", name)
        assert result.exit_code == 0, result.output
        assert name in result.stderr

        response = await client.post("/send", json=VALID)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"

    listing = await _cli("keys", "list")
    row = next(line for line in listing.stdout.splitlines() if line.startswith(name + " "))
    assert not row.rstrip().endswith(" -"), row  # the REVOKED column has a time


async def test_revoke_by_id_stops_the_key(
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    clean: None,
) -> None:
    name = _name()
    key = await _create(name)
    async with sessions() as session:
        key_id = (
            await session.execute(
                text("SELECT id FROM api_keys WHERE name = :name"), {"name": name}
            )
        ).scalar_one()
    async with api_client(_settings_without_cache(settings_factory), key=key) as client:
        assert (await client.post("/send", json=VALID)).status_code == 202
        result = await _cli("keys", "revoke", str(key_id))
        assert result.exit_code == 0, result.output
        assert (await client.post("/send", json=VALID)).status_code == 401


async def test_a_revoked_name_can_be_reused() -> None:
    name = _name()
    first = await _create(name)
    assert (await _cli("keys", "revoke", name)).exit_code == 0
    second = await _create(name)
    assert second != first


async def test_revoking_twice_or_an_unknown_key_fails() -> None:
    unknown = await _cli("keys", "revoke", _name())
    assert unknown.exit_code == 1, unknown.output
    assert "No active key" in unknown.stderr
    assert "Traceback" not in unknown.output

    name = _name()
    await _create(name)
    assert (await _cli("keys", "revoke", name)).exit_code == 0
    again = await _cli("keys", "revoke", name)
    assert again.exit_code == 1, again.output


def test_keys_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["keys", "--help"])
    assert result.exit_code == 0
    for command in ("create", "list", "revoke"):
        assert command in result.output
