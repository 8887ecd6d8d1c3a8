"""`mailroom projects …`: create and list projects (every key belongs to one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mailroom.cli.common import in_one_transaction

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

projects_app = typer.Typer(
    help="Create and list projects: each application's keys and emails, kept apart.",
    no_args_is_help=True,
)


@projects_app.command("create")
def create(
    name: Annotated[
        str, typer.Argument(help="Lower-case letters, digits, '-' and '_' (at most 64)")
    ],
) -> None:
    """Create a project; then give it keys with `mailroom keys create --project NAME`."""
    from mailroom.projects import service

    project = in_one_transaction(lambda session: service.create_project(session, name))
    typer.echo(
        f"Created project {project.name!r}: "
        f"`mailroom keys create --name NAME --project {project.name}` gives it a key.",
        err=True,
    )
    typer.echo(project.name)


@projects_app.command("list")
def list_() -> None:
    """Every project: name, active keys, emails stored, created."""
    rows = in_one_transaction(_listing)
    columns = ("NAME", "KEYS", "EMAILS", "CREATED")
    lines = [columns, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


async def _listing(session: AsyncSession) -> list[tuple[str, str, str, str]]:
    from mailroom.auth.service import active_keys_by_project
    from mailroom.emails.log import emails_by_project
    from mailroom.projects.service import list_projects

    keys = await active_keys_by_project(session)
    emails = await emails_by_project(session)
    return [
        (
            project.name,
            str(keys.get(project.id, 0)),
            str(emails.get(project.id, 0)),
            project.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for project in await list_projects(session)
    ]
