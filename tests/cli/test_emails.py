"""`mailroom emails retry|cancel|requeue` against the test database and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from mailroom.cli import app
from mailroom.emails.models import Email
from mailroom.projects.service import create_project
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings
from tests.support.cli import cli_environment
from tests.support.factories import email_in, insert_emails

pytestmark = pytest.mark.usefixtures("clean")
runner = CliRunner()
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(
        monkeypatch,
        settings,
        REDIS_URL=settings.redis_url,
        QUEUE_PREFIX=settings.queue_prefix,
        QUEUE_NAME=settings.queue_name,
    ):
        yield


async def _mailroom(*args: str) -> Result:
    # The command runs its own event loop, so it cannot share the test's.
    return await asyncio.to_thread(runner.invoke, app, ["emails", *args])


async def _status(sessions: Sessions, email_id: uuid.UUID) -> str:
    async with sessions() as session:
        return str(
            (await session.execute(select(Email.status).where(Email.id == email_id))).scalar_one()
        )


async def _queued(settings: Settings, job_id: str) -> bool:
    dispatcher = Dispatcher(settings)
    try:
        return await dispatcher.queue.getJob(job_id) is not None
    finally:
        await dispatcher.aclose()


async def test_retry_puts_a_failed_email_back_and_queues_its_next_attempt(
    sessions: Sessions, settings: Settings
) -> None:
    failed = email_in("failed")
    await insert_emails(sessions, failed)
    result = await _mailroom("retry", str(failed.id))
    assert result.exit_code == 0, result.output
    assert f"Email {failed.id} is queued again." in result.output
    assert await _status(sessions, failed.id) == "queued"
    assert await _queued(settings, f"{failed.id}-2")


async def test_retry_of_an_email_that_did_not_fail_says_why(sessions: Sessions) -> None:
    sent = email_in("sent")
    await insert_emails(sessions, sent)
    result = await _mailroom("retry", str(sent.id))
    assert result.exit_code == 1
    assert "This email is sent; only failed emails can be retried." in result.output


async def test_cancel_stops_a_scheduled_email(sessions: Sessions) -> None:
    scheduled = email_in("scheduled")
    await insert_emails(sessions, scheduled)
    result = await _mailroom("cancel", str(scheduled.id))
    assert result.exit_code == 0, result.output
    assert f"Email {scheduled.id} is cancelled." in result.output
    assert await _status(sessions, scheduled.id) == "cancelled"


@pytest.mark.parametrize(
    ("argument", "code", "message"),
    [
        pytest.param("not-an-id", 2, "is not an email id", id="malformed"),
        pytest.param(str(uuid.UUID(int=7)), 1, "No email with id", id="unknown"),
    ],
)
async def test_cancel_refuses_what_it_cannot_find(argument: str, code: int, message: str) -> None:
    result = await _mailroom("cancel", argument)
    assert result.exit_code == code
    assert message in result.output


async def test_requeue_counts_on_a_dry_run_then_requeues(
    sessions: Sessions, settings: Settings
) -> None:
    soft = email_in("failed", last_error_code=451, last_error_message="try later")
    hard = email_in("failed", last_error_code=550, last_error_message="no such user")
    await insert_emails(sessions, soft, hard, email_in("sent"))

    dry = await _mailroom("requeue", "--error-class", "4xx", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "1 failed emails match; nothing was changed" in dry.output
    assert await _status(sessions, soft.id) == "failed"

    done = await _mailroom("requeue", "--error-class", "4xx")
    assert done.exit_code == 0, done.output
    assert "Requeued 1 of 1 matching failed emails." in done.output
    assert (await _status(sessions, soft.id), await _status(sessions, hard.id)) == (
        "queued",
        "failed",
    )
    assert await _queued(settings, f"{soft.id}-2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--error-class", "6xx"), "--error-class", id="error-class"),
        pytest.param(
            ("--since", "2026-11-02", "--until", "2026-11-01"), "later than since", id="range"
        ),
    ],
)
async def test_requeue_refuses_bad_filters(args: tuple[str, ...], message: str) -> None:
    result = await _mailroom("requeue", *args)
    assert result.exit_code == 2
    assert message in result.output


async def _other_project(sessions: Sessions) -> tuple[uuid.UUID, str]:
    name = f"ops-{uuid.uuid4().hex[:10]}"
    async with sessions() as session:
        project = await create_project(session, name)
        await session.commit()
    return project.id, name


async def test_project_confines_retry_and_cancel_to_that_projects_emails(
    sessions: Sessions,
) -> None:
    project_id, name = await _other_project(sessions)
    failed, scheduled = email_in("failed"), email_in("scheduled")  # the default project's
    theirs = email_in("failed", project_id=project_id)
    await insert_emails(sessions, failed, scheduled, theirs)

    for action, email in (("retry", failed), ("cancel", scheduled)):
        result = await _mailroom(action, str(email.id), "--project", name)
        assert result.exit_code == 1
        assert f"No email with id {email.id}" in result.output
    assert (await _status(sessions, failed.id), await _status(sessions, scheduled.id)) == (
        "failed",
        "scheduled",
    )
    done = await _mailroom("retry", str(theirs.id), "--project", name)
    assert done.exit_code == 0, done.output
    assert await _status(sessions, theirs.id) == "queued"
    # Without --project, any project's email.
    assert (await _mailroom("cancel", str(scheduled.id))).exit_code == 0
    unknown = await _mailroom("retry", str(failed.id), "--project", "no-such-project")
    assert unknown.exit_code == 1
    assert "No project named 'no-such-project'" in unknown.output


async def test_requeue_by_project(sessions: Sessions) -> None:
    project_id, name = await _other_project(sessions)
    mine = [email_in("failed", project_id=project_id) for _ in range(2)]
    await insert_emails(sessions, *mine, email_in("failed"), email_in("failed"), email_in("failed"))

    dry = await _mailroom("requeue", "--project", name, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"2 failed emails of project {name!r} match" in dry.output
    everything = await _mailroom("requeue", "--dry-run")
    assert "5 failed emails match" in everything.output

    done = await _mailroom("requeue", "--project", name)
    assert done.exit_code == 0, done.output
    assert f"Requeued 2 of 2 matching failed emails of project {name!r}." in done.output
    assert {await _status(sessions, e.id) for e in mine} == {"queued"}
    assert "3 failed emails match" in (await _mailroom("requeue", "--dry-run")).output
