"""`mailroom emails …`: retry, cancel and requeue emails from a shell (as the API does).

An operator at the shell reaches every project's emails, as an admin key does;
``--project`` confines a command to one project's.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mailroom.cli.common import load_cli_settings, run_with_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from mailroom.queue.dispatcher import Dispatcher

T = TypeVar("T")

emails_app = typer.Typer(help="Retry, cancel and requeue emails.", no_args_is_help=True)


def _run(work: Callable[[async_sessionmaker[AsyncSession], Dispatcher], Awaitable[T]]) -> T:
    """Run ``work`` with the database and a dispatcher, as the API would."""
    from mailroom.queue.dispatcher import Dispatcher

    settings = load_cli_settings()

    async def with_queue(sessions: async_sessionmaker[AsyncSession]) -> T:
        dispatcher = Dispatcher(settings)
        try:
            return await work(sessions, dispatcher)
        finally:
            await dispatcher.aclose()

    return run_with_database(settings, with_queue, pool_size=2)


def _email_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        typer.echo(f"{value[:64]!r} is not an email id", err=True)
        raise typer.Exit(2) from None


EmailIdArgument = Annotated[str, typer.Argument(help="The id POST /send returned")]
ProjectOption = Annotated[
    str | None,
    typer.Option(help="Only an email of this project (default: any project's)"),
]


def _move(email_id: str, action: str, project: str | None) -> str:
    """Retry or cancel one email; returns its new status."""
    parsed = _email_id(email_id)
    from mailroom.emails import operations
    from mailroom.projects.access import ProjectAccess
    from mailroom.unit_of_work import unit_of_work

    move = operations.retry_email if action == "retry" else operations.cancel_email

    async def work(sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher) -> str:
        async with unit_of_work(sessions, dispatcher.dispatch) as uow:
            item = await move(uow, parsed, access=ProjectAccess.operator(), project=project)
        return item.status.value

    return _run(work)


@emails_app.command("retry")
def retry(email_id: EmailIdArgument, project: ProjectOption = None) -> None:
    """Send a failed email again (its attempts so far stay in its history)."""
    typer.echo(f"Email {email_id} is {_move(email_id, 'retry', project)} again.")


@emails_app.command("cancel")
def cancel(email_id: EmailIdArgument, project: ProjectOption = None) -> None:
    """Cancel a scheduled, queued or retrying email: it will never be sent."""
    typer.echo(f"Email {email_id} is {_move(email_id, 'cancel', project)}.")


@emails_app.command("requeue")
def requeue(
    since: Annotated[
        datetime | None, typer.Option(help="Created at or after (ISO 8601; UTC if no offset)")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before (ISO 8601)")] = None,
    to: Annotated[str | None, typer.Option(help="Only emails with this recipient")] = None,
    error_class: Annotated[
        str | None, typer.Option(help="The last error: 4xx, 5xx or connection")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Requeue at most this many")] = 10_000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count them; change nothing")] = False,
    project: Annotated[
        str | None, typer.Option(help="Only this project's emails (default: every project's)")
    ] = None,
) -> None:
    """Send again the failed emails these filters select (as POST /emails/requeue)."""
    from pydantic import ValidationError

    from mailroom.emails import operations
    from mailroom.emails.schemas.requests import RequeueRequest
    from mailroom.emails.schemas.responses import RequeueResult
    from mailroom.errors import field_errors
    from mailroom.projects.access import ProjectAccess

    try:
        request = RequeueRequest(
            since=since,
            until=until,
            to=to,
            error_class=error_class,  # validated here: 4xx, 5xx or connection
            limit=limit,
            dry_run=dry_run,
        )
    except ValidationError as exc:
        for problem in field_errors(exc.errors()):
            typer.echo(f"--{problem['field'].replace('_', '-')}: {problem['message']}", err=True)
        raise typer.Exit(2) from None

    async def work(
        sessions: async_sessionmaker[AsyncSession], dispatcher: Dispatcher
    ) -> RequeueResult:
        return await operations.requeue_failed(
            sessions, dispatcher.dispatch, request, access=ProjectAccess.operator(), project=project
        )

    result = _run(work)
    of = f" of project {project!r}" if project is not None else ""
    if result.dry_run:
        typer.echo(f"{result.matched} failed emails{of} match; nothing was changed (--dry-run).")
        return
    more = " More match: run it again for the rest." if result.has_more else ""
    typer.echo(f"Requeued {result.requeued} of {result.matched} matching failed emails{of}.{more}")
