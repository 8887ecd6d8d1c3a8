"""`mailroom suppressions list|add|remove|import|export` and `mailroom bounces --unmatched`,
against the test database."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from mailroom.cli import app
from mailroom.emails import feedback
from mailroom.emails.feedback import FeedbackEvent
from mailroom.settings import Settings
from tests.support.cli import cli_environment

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(monkeypatch, settings):
        yield


async def _cli(*args: str) -> Result:
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def _listed() -> list[str]:
    result = await _cli("suppressions", "list")
    assert result.exit_code == 0, result.output
    return sorted(line.split("\t")[0] for line in result.stdout.splitlines())


async def test_add_list_remove() -> None:
    result = await _cli("suppressions", "add", "Jane@Example.com", "carl@example.com")
    assert result.exit_code == 0, result.output
    assert "Added 2 of 2" in result.stdout
    assert await _listed() == ["Jane@example.com", "carl@example.com"]

    only = await _cli("suppressions", "list", "--q", "carl", "--reason", "manual")
    assert only.stdout.split("\t")[0] == "carl@example.com"
    bad_reason = await _cli("suppressions", "list", "--reason", "spam")
    assert bad_reason.exit_code == 2

    removed = await _cli("suppressions", "remove", "Jane@EXAMPLE.com")
    assert removed.exit_code == 0, removed.output
    assert await _listed() == ["carl@example.com"]
    missing = await _cli("suppressions", "remove", "Jane@example.com")
    assert missing.exit_code == 1 and "No suppression" in missing.output

    invalid = await _cli("suppressions", "add", "not-an-address")
    assert invalid.exit_code == 2
    nowhere = await _cli("suppressions", "add", "a@example.com", "--project", "nope")
    assert nowhere.exit_code == 1 and "No project named 'nope'" in nowhere.output


async def test_import_reports_bad_lines_and_imports_the_good_ones(tmp_path: Path) -> None:
    file = tmp_path / "list.csv"
    file.write_text(
        "email,reason\n"
        "ann@example.com\n"
        "not an address\n"
        "bob@example.com,unsubscribe\n"
        "\n"
        "cy@example.com,hard_bounce\n"
        "dee@Example.COM,manual\n"
    )
    result = await _cli("suppressions", "import", str(file))
    assert result.exit_code == 1
    assert "line 3:" in result.stderr
    assert "line 6: reason 'hard_bounce' is not manual or unsubscribe" in result.stderr
    assert "Imported 3 addresses (3 new), 2 bad lines." in result.stdout
    assert await _listed() == ["ann@example.com", "bob@example.com", "dee@example.com"]

    exported = await _cli("suppressions", "export")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {r["address"]: r["reason"] for r in rows} == {
        "ann@example.com": "manual",
        "bob@example.com": "unsubscribe",
        "dee@example.com": "manual",
    }


async def test_bounces_lists_unmatched_reports(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert (await _cli("bounces", "--unmatched")).stdout == ""
    event = FeedbackEvent(provider="dsn", kind="bounced", message_id="<gone@example.net>")
    async with sessions() as session:
        await feedback.record(session, settings, [event], datetime.now(UTC))
        await session.commit()
    result = await _cli("bounces", "--unmatched")
    assert result.exit_code == 0, result.output
    assert "<gone@example.net>" in result.stdout
    assert "no email has this Message-ID" in result.stdout
