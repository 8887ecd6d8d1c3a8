"""`mailroom keys …`: create, list and revoke API keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mailroom.auth.scopes import ALL_SCOPES, parse_scopes
from mailroom.cli.common import load_cli_settings, run_with_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction, committed when it returns."""
    from sqlalchemy.exc import ProgrammingError

    async def in_session(sessions: async_sessionmaker[AsyncSession]) -> T:
        async with sessions() as session:
            result = await work(session)
            await session.commit()
            return result

    try:
        return run_with_database(load_cli_settings(), in_session)
    except ProgrammingError as exc:
        if "does not exist" in str(exc):
            typer.echo("The database has no api_keys table yet: run `mailroom migrate`.", err=True)
            raise typer.Exit(1) from None
        raise


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
) -> None:
    """Create a key and print it, alone on its line (it is shown only this once)."""
    try:
        parsed = parse_scopes(scopes)
    except ValueError as exc:
        typer.echo(f"--scopes: {exc}", err=True)
        raise typer.Exit(2) from None
    from mailroom.auth import service

    row, key = _in_session(
        lambda session: service.create_key(
            session, name=name, scopes=parsed, rate_limit=rate_limit, sandbox=sandbox
        ),
    )
    typer.echo(
        f"Created {'sandbox ' if row.sandbox else ''}key {row.name!r} ({row.prefix}…) "
        f"with scopes {', '.join(row.scopes)}. "
        "Store it now: it cannot be shown again.",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def list_() -> None:
    """Every key: name, prefix, scopes, created, last used, revoked."""
    from mailroom.auth import service

    rows = _in_session(service.list_keys)
    if not rows:
        typer.echo("No keys yet: `mailroom keys create --name NAME`.", err=True)
        return
    columns = ("NAME", "PREFIX", "SCOPES", "SANDBOX", "CREATED", "LAST USED", "REVOKED")
    lines = [columns] + [
        (
            row.name,
            row.prefix,
            ",".join(row.scopes),
            "yes" if row.sandbox else "",
            _when(row.created_at),
            _when(row.last_used_at),
            _when(row.revoked_at),
        )
        for row in rows
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

    row = _in_session(lambda session: service.revoke_key(session, name_or_id))
    typer.echo(f"Revoked key {row.name!r} ({row.prefix}…).", err=True)
