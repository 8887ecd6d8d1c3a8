"""`mailroom purge` against the test database: what it deletes, prints, and refuses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from mailroom.cli import app
from mailroom.emails.models import DeliveryAttempt, Email
from mailroom.settings import Settings
from tests.support.cli import cli_environment
from tests.support.factories import email_row, insert_emails

runner = CliRunner()
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(monkeypatch, settings, PURGE_BATCH_SIZE=None):
        yield


async def _purge(*args: str) -> Result:
    # The command runs its own event loop, so it cannot share the test's.
    return await asyncio.to_thread(runner.invoke, app, ["purge", *args])


def _email(status: str, age: timedelta) -> Email:
    created_at = datetime.now(UTC) - age
    extra = {"cancelled_at": created_at} if status == "cancelled" else {}
    return email_row(created_at, status, **extra)


async def _present(sessions: Sessions) -> dict[uuid.UUID, str]:
    async with sessions() as session:
        rows = await session.execute(select(Email.id, Email.status))
        return dict(rows.all())


OLD = timedelta(days=400)
YOUNG = timedelta(days=30)


@pytest.fixture
async def emails(sessions: Sessions, clean: None) -> dict[str, Email]:
    """Old emails in every status (two sent), and a young sent one."""
    rows = {
        "sent": _email("sent", OLD),
        "sent2": _email("sent", OLD + timedelta(days=1)),
        "failed": _email("failed", OLD),
        "cancelled": _email("cancelled", OLD),
        "queued": _email("queued", OLD),
        "sending": _email("sending", OLD),
        "retrying": _email("retrying", OLD),
        "scheduled": _email("scheduled", OLD),
        "young": _email("sent", YOUNG),
    }
    await insert_emails(sessions, *rows.values())
    return rows


async def test_it_deletes_old_final_emails_and_prints_the_count_per_status(
    sessions: Sessions, emails: dict[str, Email], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PURGE_BATCH_SIZE", "2")
    async with sessions() as session:
        session.add(
            DeliveryAttempt(
                email_id=emails["failed"].id,
                attempt_number=1,
                started_at=datetime.now(UTC) - OLD,
                finished_at=datetime.now(UTC) - OLD,
                outcome="permanent",
                smtp_code=550,
                duration_ms=3,
            )
        )
        await session.commit()

    result = await _purge("--older-than", "90d")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Deleted 4 emails created before ")
    assert lines[1:] == ["  sent: 2", "  failed: 1", "  cancelled: 1"]
    kept = {"queued", "sending", "retrying", "scheduled", "young"}
    assert await _present(sessions) == {emails[k].id: emails[k].status for k in kept}
    async with sessions() as session:
        assert (await session.execute(select(DeliveryAttempt.id))).first() is None


async def test_status_limits_what_is_deleted(sessions: Sessions, emails: dict[str, Email]) -> None:
    result = await _purge("--older-than", "12w", "--status", "failed,cancelled")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["  failed: 1", "  cancelled: 1"]
    left = await _present(sessions)
    assert emails["sent"].id in left and emails["sent2"].id in left
    assert emails["failed"].id not in left and emails["cancelled"].id not in left


async def test_a_dry_run_counts_and_deletes_nothing(
    sessions: Sessions, emails: dict[str, Email]
) -> None:
    before = await _present(sessions)

    result = await _purge("--older-than", "90d", "--dry-run")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Would delete 4 emails created before ")
    assert lines[1:] == [
        "  sent: 2",
        "  failed: 1",
        "  cancelled: 1",
        "Dry run: nothing was deleted.",
    ]
    assert await _present(sessions) == before


async def test_the_age_decides(sessions: Sessions, emails: dict[str, Email]) -> None:
    # 2w is younger than the "young" email (30 days): it goes too.
    result = await _purge("--older-than", "2w", "--status", "sent", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:-1] == ["  sent: 3"]
    result = await _purge("--older-than", "401d", "--status", "sent", "--dry-run")
    assert result.stdout.splitlines()[1:-1] == ["  sent: 1"]  # only sent2 is 401 days old


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "is not a duration"),
        ("90", "is not a duration"),
        ("90x", "is not a duration"),
        ("", "is not a duration"),
        ("0d", "is zero"),
        ("-5d", "is negative"),
        ("100000d", "is too long"),
    ],
)
async def test_a_bad_age_is_refused_with_exit_code_2(
    value: str, reason: str, sessions: Sessions, emails: dict[str, Email]
) -> None:
    before = await _present(sessions)

    result = await _purge("--older-than", value)

    assert result.exit_code == 2, result.output
    assert "--older-than" in result.stderr and reason in result.stderr
    assert "Traceback" not in result.output
    assert await _present(sessions) == before


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("queued", "'queued' is not a final status (a queued email is waiting to be delivered)"),
        ("sent,sending", "'sending' is not a final status (a sending email is being delivered"),
        ("retrying", "is waiting for its next attempt"),
        ("scheduled", "is waiting for its send time"),
        ("sent,bogus", "unknown status 'bogus'"),
        (",", "give at least one status"),
    ],
)
async def test_a_status_that_cannot_be_purged_is_refused_with_the_reason(
    value: str, reason: str, sessions: Sessions, emails: dict[str, Email]
) -> None:
    before = await _present(sessions)

    result = await _purge("--older-than", "1m", "--status", value)

    assert result.exit_code == 2, result.output
    assert "--status" in result.stderr and reason in result.stderr
    if "final" in reason:
        assert (
            "only sent, failed, cancelled, suppressed, bounced emails are ever purged"
            in result.stderr
        )
    assert await _present(sessions) == before


async def test_the_age_is_required() -> None:
    result = await _purge("--dry-run")
    assert result.exit_code == 2
    assert "--older-than" in result.output


async def test_a_bad_batch_size_setting_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PURGE_BATCH_SIZE", "0")
    result = await _purge("--older-than", "90d")
    assert result.exit_code == 2
    assert "PURGE_BATCH_SIZE" in result.output
    assert "Traceback" not in result.output


def test_help_lists_purge() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "purge" in result.output


async def test_an_unreachable_database_is_one_line_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = await _purge("--older-than", "90d")
    assert result.exit_code == 1
    assert result.stderr.startswith("Purge stopped: ")
    assert "Traceback" not in result.output
