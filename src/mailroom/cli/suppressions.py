"""`mailroom suppressions …`: the suppression list from the shell (any project's)."""

from __future__ import annotations

import csv
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailroom.cli.common import in_one_transaction, load_cli_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

suppressions_app = typer.Typer(
    help="The suppression list: addresses Mailroom does not send to.", no_args_is_help=True
)
ProjectOption = Annotated[
    str, typer.Option("--project", help="Whose list (ignored under SUPPRESSION_SCOPE=global)")
]
_BATCH = 1000


async def _project_id(session: AsyncSession, name: str) -> uuid.UUID:
    from mailroom.errors import NotFound
    from mailroom.projects.service import find_project

    project = await find_project(session, name)
    if project is None:
        raise NotFound(f"No project named {name!r}.")
    return project.id


@suppressions_app.command("list")
def list_(
    project: ProjectOption = "default",
    reason: Annotated[str | None, typer.Option(help="Only this reason")] = None,
    q: Annotated[str | None, typer.Option(help="Addresses containing this")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 100,
) -> None:
    """The newest entries: address, reason, created, expires."""
    from mailroom.suppressions import service
    from mailroom.suppressions.models import Reason

    settings = load_cli_settings()
    try:
        wanted = Reason(reason) if reason else None
    except ValueError:
        typer.echo(f"--reason must be one of {', '.join(r.value for r in Reason)}", err=True)
        raise typer.Exit(2) from None

    async def work(session: AsyncSession) -> list[str]:
        project_id = await _project_id(session, project)
        page = await service.list_page(
            session,
            settings,
            project_id,
            now=datetime.now(UTC),
            limit=limit,
            reason=wanted,
            q=q,
        )
        return [
            f"{i.address}\t{i.reason.value}\t{i.created_at.isoformat()}\t"
            f"{i.expires_at.isoformat() if i.expires_at else '-'}"
            for i in page.data
        ]

    for line in in_one_transaction(work):
        typer.echo(line)


def _add(project: str, addresses: list[str], reason: str, expires: datetime | None) -> int:
    from mailroom.suppressions import service
    from mailroom.suppressions.schemas import AddSuppressions

    settings = load_cli_settings()
    request = AddSuppressions(addresses=addresses, reason=reason, expires_at=expires)

    async def work(session: AsyncSession) -> int:
        project_id = await _project_id(session, project)
        added = await service.add_manual(
            session,
            settings,
            project_id,
            request,
            datetime.now(UTC),
        )
        return added.added

    return in_one_transaction(work)


@suppressions_app.command("add")
def add(
    addresses: Annotated[list[str], typer.Argument(help="One or more addresses")],
    project: ProjectOption = "default",
    reason: Annotated[str, typer.Option(help="manual or unsubscribe")] = "manual",
) -> None:
    """Suppress addresses by hand."""
    from pydantic import ValidationError

    try:
        added = _add(project, addresses, reason, None)
    except ValidationError as exc:
        typer.echo(f"Invalid: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Added {added} of {len(addresses)}.")


@suppressions_app.command("remove")
def remove(address: str, project: ProjectOption = "default") -> None:
    """Take an address off the list: the next email to it is sent."""
    from mailroom.suppressions import service

    settings = load_cli_settings()

    async def work(session: AsyncSession) -> None:
        project_id = await _project_id(session, project)
        await service.remove(session, settings, project_id, address)

    in_one_transaction(work)
    typer.echo(f"Removed {address}.")


@suppressions_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV file")],
    project: ProjectOption = "default",
) -> None:
    """Suppress the addresses of a CSV file: first column the address, optional second the
    reason (manual or unsubscribe); a header row is skipped. Bad lines are reported by
    number and the good ones imported."""
    from mailroom.suppressions.addresses import normalize

    good: list[tuple[str, str]] = []
    bad: list[str] = []
    with file.open(newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            address, reason = row[0].strip(), (row[1].strip() if len(row) > 1 else "") or "manual"
            if number == 1 and "@" not in address:
                continue  # a header
            try:
                key = normalize(address)
            except ValueError as exc:
                bad.append(f"line {number}: {exc}")
                continue
            if reason not in ("manual", "unsubscribe"):
                bad.append(f"line {number}: reason {reason[:40]!r} is not manual or unsubscribe")
                continue
            good.append((key, reason))
    added = 0
    for reason in ("manual", "unsubscribe"):
        chosen = [a for a, r in good if r == reason]
        for start in range(0, len(chosen), _BATCH):
            added += _add(project, chosen[start : start + _BATCH], reason, None)
    for line in bad:
        typer.echo(line, err=True)
    typer.echo(f"Imported {len(good)} addresses ({added} new), {len(bad)} bad lines.")
    if bad:
        raise typer.Exit(1)


@suppressions_app.command("export")
def export(project: ProjectOption = "default") -> None:
    """The whole list as CSV on standard output (address, reason, email, created, expires)."""
    from mailroom.suppressions import service

    settings = load_cli_settings()

    async def work(session: AsyncSession) -> list[list[str]]:
        project_id = await _project_id(session, project)
        return [
            [
                i.address,
                i.reason.value,
                str(i.email_id or ""),
                i.created_at.isoformat(),
                i.expires_at.isoformat() if i.expires_at else "",
            ]
            async for i in service.export(session, settings, project_id, datetime.now(UTC))
        ]

    rows = in_one_transaction(work)
    writer = csv.writer(sys.stdout)
    writer.writerow(["address", "reason", "email_id", "created_at", "expires_at"])
    writer.writerows(rows)
