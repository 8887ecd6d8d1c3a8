"""`mailroom webhooks …`: a project's webhook endpoints, their secrets, tests and log."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailroom.cli.common import in_one_transaction, load_cli_settings, run_with_database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

webhooks_app = typer.Typer(
    help="Webhook endpoints: signed status events POSTed to an application.",
    no_args_is_help=True,
)

ProjectOption = Annotated[str, typer.Option(help="The project whose endpoints these are")]
IdArgument = Annotated[str, typer.Argument(help="The endpoint's id")]


async def _project_id(session: AsyncSession, name: str) -> uuid.UUID:
    from mailroom.errors import NotFound
    from mailroom.projects.service import find_project

    project = await find_project(session, name)
    if project is None:
        raise NotFound(f"No project named {name!r}: see `mailroom projects list`.")
    return project.id


def _endpoint_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        typer.echo(f"No webhook endpoint with id {value[:64]!r}", err=True)
        raise typer.Exit(1) from None


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


@webhooks_app.command("create")
def create(
    url: Annotated[str, typer.Option(help="https URL the events are POSTed to")],
    event: Annotated[
        list[str] | None, typer.Option(help="An event type to receive (repeat); default all")
    ] = None,
    description: Annotated[str | None, typer.Option(help="A note for people")] = None,
    project: ProjectOption = "default",
) -> None:
    """Add an endpoint; prints it with its secret (shown this once)."""
    from pydantic import ValidationError

    from mailroom.webhooks import service
    from mailroom.webhooks.schemas.requests import CreateWebhook

    settings = load_cli_settings()
    try:
        body = CreateWebhook(url=url, events=event or None, description=description)
    except ValidationError as exc:
        typer.echo(f"Invalid: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(1) from None

    async def work(session: AsyncSession) -> dict[str, Any]:
        project_id = await _project_id(session, project)
        created = await service.create(session, body, project_id=project_id, settings=settings)
        return created.model_dump(mode="json", by_alias=True)

    created = in_one_transaction(work)
    typer.echo("Keep the secret: it is not shown again (rotate it to get a new one).", err=True)
    _echo(created)


@webhooks_app.command("list")
def list_(project: ProjectOption = "default") -> None:
    """The project's endpoints."""
    from mailroom.webhooks import service

    async def work(session: AsyncSession) -> list[Any]:
        found = await service.list_endpoints(
            session, project_id=await _project_id(session, project)
        )
        return [e.model_dump(mode="json", by_alias=True) for e in found.data]

    rows = in_one_transaction(work)
    for row in rows:
        state = (
            "enabled" if row["enabled"] else f"disabled ({row['disabledReason'] or 'by a user'})"
        )
        typer.echo(f"{row['id']}  {row['url']}  {state}  {','.join(row['events'])}")


@webhooks_app.command("rotate")
def rotate(
    endpoint_id: IdArgument,
    expire_old_now: Annotated[
        bool, typer.Option(help="Stop signing with the old secret at once")
    ] = False,
    project: ProjectOption = "default",
) -> None:
    """A new secret (printed); the old one signs too for WEBHOOK_SECRET_OVERLAP."""
    from mailroom.webhooks import service

    settings = load_cli_settings()
    wanted = _endpoint_id(endpoint_id)

    async def work(session: AsyncSession) -> str:
        rotated = await service.rotate_secret(
            session,
            wanted,
            project_id=await _project_id(session, project),
            settings=settings,
            expire_old_now=expire_old_now,
        )
        return rotated.secret

    typer.echo(in_one_transaction(work))


@webhooks_app.command("test")
def send_test(endpoint_id: IdArgument, project: ProjectOption = "default") -> None:
    """Send a webhook.test event now; prints the attempt. Exit code 1 if it failed."""
    from mailroom.webhooks import service

    settings = load_cli_settings()
    wanted = _endpoint_id(endpoint_id)

    async def work(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
        async with sessions() as session:
            project_id = await _project_id(session, project)
        outcome = await service.send_test(
            sessions, wanted, project_id=project_id, settings=settings
        )
        return outcome.model_dump(mode="json", by_alias=True)

    outcome = run_with_database(settings, work)
    _echo(outcome)
    if outcome["status"] != "succeeded":
        raise typer.Exit(1)


@webhooks_app.command("deliveries")
def deliveries(
    endpoint_id: IdArgument,
    status: Annotated[str | None, typer.Option(help="succeeded, failed or pending")] = None,
    event_type: Annotated[str | None, typer.Option(help="Only this event type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    project: ProjectOption = "default",
) -> None:
    """The newest attempts, one line each."""
    from mailroom.webhooks import service

    wanted = _endpoint_id(endpoint_id)
    if status not in (None, "succeeded", "failed", "pending"):
        typer.echo("--status is succeeded, failed or pending", err=True)
        raise typer.Exit(2)

    async def work(session: AsyncSession) -> list[Any]:
        page = await service.deliveries(
            session,
            wanted,
            project_id=await _project_id(session, project),
            cursor=None,
            status=status,
            event_type=event_type,
            limit=limit,
        )
        return [a.model_dump(mode="json", by_alias=True) for a in page.data]

    for a in in_one_transaction(work):
        code = a["responseCode"] if a["responseCode"] is not None else "-"
        typer.echo(
            f"{a['createdAt']}  {a['eventId']}  {a['eventType']}  #{a['attempt']}  "
            f"{a['status']}  {code}  {a['durationMs']}ms  {a['error'] or ''}".rstrip()
        )


@webhooks_app.command("delete")
def delete(endpoint_id: IdArgument, project: ProjectOption = "default") -> None:
    """Delete an endpoint and its deliveries log."""
    from mailroom.webhooks import service

    wanted = _endpoint_id(endpoint_id)

    async def work(session: AsyncSession) -> None:
        await service.delete(session, wanted, project_id=await _project_id(session, project))

    in_one_transaction(work)
    typer.echo(f"Deleted webhook endpoint {wanted}", err=True)
