"""`mailroom purge`: delete old sent, failed and cancelled emails, in small batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mailroom.cli.common import load_cli_settings, run_with_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from mailroom.emails.states import EmailStatus


def purge(
    older_than: Annotated[
        str,
        typer.Option(
            help="Delete emails created longer ago than this: 90d, 12h, 30m, 2w",
            show_default=False,
        ),
    ],
    status: Annotated[
        str, typer.Option(help="Comma-separated final statuses to delete")
    ] = "sent,failed,cancelled",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing")
    ] = False,
) -> None:
    """Delete old sent, failed and cancelled emails with their attempts, in small batches."""
    from datetime import UTC, datetime

    from mailroom.emails import retention

    try:
        age = retention.parse_duration(older_than)
    except ValueError as exc:
        typer.echo(f"--older-than: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        statuses = retention.parse_statuses(status)
    except ValueError as exc:
        typer.echo(f"--status: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = load_cli_settings()
    from sqlalchemy.exc import DBAPIError

    before = datetime.now(UTC) - age
    progress_every = max(1, 100_000 // settings.purge_batch_size)
    deleted_so_far = 0

    def progress(so_far: retention.PurgeResult) -> None:
        nonlocal deleted_so_far
        deleted_so_far = so_far.total
        if so_far.batches % progress_every == 0:
            typer.echo(f"… {so_far.total} deleted so far", err=True)

    async def work(sessions: async_sessionmaker[AsyncSession]) -> dict[EmailStatus, int]:
        if dry_run:
            return dict(await retention.count_purgeable(sessions, before=before, statuses=statuses))
        done = await retention.purge(
            sessions,
            before=before,
            statuses=statuses,
            batch_size=settings.purge_batch_size,
            on_batch=progress,
        )
        return dict(done.deleted)

    try:
        # Its own message: how far it got matters when the database goes away midway.
        counts = run_with_database(settings, work, report_unreachable=False)
    except (OSError, DBAPIError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"Purge stopped: {reason}", err=True)
        if deleted_so_far:
            typer.echo(f"{deleted_so_far} emails were deleted before that.", err=True)
        raise typer.Exit(1) from None
    total = sum(counts.values())
    verb = "Would delete" if dry_run else "Deleted"
    typer.echo(f"{verb} {total} emails created before {before.isoformat(timespec='seconds')}:")
    for final_status in statuses:
        typer.echo(f"  {final_status.value}: {counts.get(final_status, 0)}")
    if dry_run:
        typer.echo("Dry run: nothing was deleted.")
