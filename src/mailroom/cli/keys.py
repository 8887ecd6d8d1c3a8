"""`mailroom keys …`: create, list and revoke API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from mailroom.auth.scopes import ALL_SCOPES, parse_scopes
from mailroom.cli.common import in_one_transaction
from mailroom.projects.names import DEFAULT_PROJECT_NAME

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="A name to recognise the key by (unique)")],
    scopes: Annotated[
        str, typer.Option(help=f"Comma-separated: {', '.join(s.value for s in ALL_SCOPES)}")
    ] = "send,logs:read",
    rate_limit: Annotated[
        str | None, typer.Option(help="This key's limit on POST /send, e.g. 500/second")
    ] = None,
    sandbox: Annotated[
        bool,
        typer.Option("--sandbox", help="Emails sent with it are logged, never delivered (for CI)"),
    ] = False,
    project: Annotated[
        str,
        typer.Option(
            help="The project the key sends to and reads (it must exist: `mailroom projects "
            "create`); without the admin scope, it sees no other project's emails"
        ),
    ] = DEFAULT_PROJECT_NAME,
) -> None:
    """Create a key and print it, alone on its line (it is shown only this once)."""
    try:
        parsed = parse_scopes(scopes)
    except ValueError as exc:
        typer.echo(f"--scopes: {exc}", err=True)
        raise typer.Exit(2) from None
    from mailroom.auth import service

    row, key = in_one_transaction(
        lambda session: service.create_key(
            session,
            name=name,
            scopes=parsed,
            rate_limit=rate_limit,
            sandbox=sandbox,
            project=project,
        ),
    )
    reach = "every project" if "admin" in row.scopes else f"project {project!r} only"
    typer.echo(
        f"Created {'sandbox ' if row.sandbox else ''}key {row.name!r} ({row.prefix}…) "
        f"in project {project!r} with scopes {', '.join(row.scopes)}; it sees the emails of "
        f"{reach}. Store it now: it cannot be shown again.",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def list_(
    project: Annotated[str | None, typer.Option(help="Only this project's keys")] = None,
) -> None:
    """Every key: name, project, prefix, scopes, created, last used, revoked."""
    from mailroom.auth import service

    rows = in_one_transaction(lambda session: service.list_keys(session, project=project))
    if not rows:
        where = f" in project {project!r}" if project is not None else ""
        typer.echo(f"No keys{where} yet: `mailroom keys create --name NAME`.", err=True)
        return
    columns = ("NAME", "PROJECT", "PREFIX", "SCOPES", "SANDBOX", "CREATED", "LAST USED", "REVOKED")
    lines = [columns] + [
        (
            row.name,
            project_name,
            row.prefix,
            ",".join(row.scopes),
            "yes" if row.sandbox else "",
            _when(row.created_at),
            _when(row.last_used_at),
            _when(row.revoked_at),
        )
        for row, project_name in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


@keys_app.command("revoke")
def revoke(name_or_id: Annotated[str, typer.Argument(help="The key's name or id")]) -> None:
    """Revoke a key: requests with it fail from now on (within API_KEY_CACHE_SECONDS)."""
    from mailroom.auth import service

    row = in_one_transaction(lambda session: service.revoke_key(session, name_or_id))
    typer.echo(f"Revoked key {row.name!r} ({row.prefix}…).", err=True)
