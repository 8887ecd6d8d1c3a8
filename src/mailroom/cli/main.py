"""The `mailroom` app, and the commands that run a process or check one."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from mailroom.cli.bounces import bounces
from mailroom.cli.common import load_cli_settings, run_server, stop_event
from mailroom.cli.emails import emails_app
from mailroom.cli.keys import keys_app
from mailroom.cli.projects import projects_app
from mailroom.cli.providers import providers_app
from mailroom.cli.purge import purge
from mailroom.cli.suppressions import suppressions_app
from mailroom.cli.unreachable import reachable
from mailroom.cli.webhooks import webhooks_app
from mailroom.settings import ConfigurationError, get_settings

app = typer.Typer(
    help="Mailroom: queued email delivery with a complete, queryable log.", no_args_is_help=True
)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help="Processes sharing the port (one per core)")
    ] = 1,
) -> None:
    """Serve the HTTP API."""
    settings = load_cli_settings()
    from mailroom.api.server import api_server, run_api_processes

    if processes > 1:
        run_api_processes(host, port, processes, settings=settings)
        return
    from mailroom.api.app import create_app

    server = api_server(create_app(settings), host, port, settings=settings)
    run_server(server.serve)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs in flight (default WORKER_CONCURRENCY)")
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes (one per core delivers most)")
    ] = 1,
) -> None:
    """Run the delivery worker until SIGTERM or Ctrl-C (in-flight sends are allowed to finish)."""
    settings = load_cli_settings()
    from mailroom.transport.from_settings import SmtpSetupError, smtp_transport
    from mailroom.worker.runner import DeliveryWorker

    try:
        transport = smtp_transport(settings)
    except SmtpSetupError as exc:
        typer.echo(f"Cannot start the worker: {exc}", err=True)
        raise typer.Exit(2) from None
    if processes > 1:
        from mailroom.worker.processes import run_worker_processes

        raise typer.Exit(
            run_worker_processes(processes, concurrency, metrics_port=settings.worker_metrics_port)
        )

    async def main() -> None:
        stop = stop_event()
        async with DeliveryWorker(settings, concurrency=concurrency, transport=transport):
            await stop.wait()

    with reachable(settings):
        run_server(main)


@app.command()
def migrate() -> None:
    """Apply database migrations (creating the database if it does not exist)."""
    settings = load_cli_settings()
    from mailroom.db.migrate import migrate as run_migrations

    with reachable(settings):
        asyncio.run(run_migrations(settings.database_url))
    typer.echo("Database is up to date.")


app.command()(purge)  # listed here, between migrate and dev


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    smtp_port: Annotated[
        int, typer.Option(help="Port of the development inbox's SMTP server")
    ] = 1025,
    embedded: Annotated[
        bool | None,
        typer.Option(
            "--embedded/--no-embedded",
            help="Start (or never start) an embedded PostgreSQL and Valkey under .mailroom/ "
            "(default: for each of DATABASE_URL and REDIS_URL that is not set, when nothing "
            "answers at its default address)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Everything in one process: migrations, API on 127.0.0.1, worker, and a development inbox."""
    settings = load_cli_settings()
    from mailroom.devserver import DevServerError, DevStopForced, run_dev
    from mailroom.embedded.dev import dev_services
    from mailroom.embedded.errors import EmbeddedServerError

    try:
        with dev_services(settings, embedded) as (settings, servers):
            for line in servers:
                typer.echo(line)
            run_server(lambda: run_dev(settings, api_port=port, smtp_port=smtp_port))
    except (DevServerError, EmbeddedServerError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except DevStopForced:
        typer.echo("Stopped without waiting for deliveries in flight (they are retried).", err=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # Ctrl-C while the embedded servers were starting
        typer.echo("Stopped before start-up completed.", err=True)


@app.command()
def health(
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--api",
            help="Check the worker's heartbeat file, or the API's GET /health "
            "(default: the worker's if its heartbeat file exists here, else the API)",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option(envvar="PORT", help="The API's port")] = 8000,
    host: Annotated[str, typer.Option(help="The API's address")] = "127.0.0.1",
    max_age: Annotated[
        float, typer.Option(min=1, help="Seconds after which a heartbeat is stale")
    ] = 30.0,
) -> None:
    """Exit 0 if the API or worker in this container is healthy, 1 if not (a HEALTHCHECK)."""
    from mailroom.health_check import check_api, check_heartbeat

    heartbeat = None
    if worker is not False:
        try:
            heartbeat = get_settings().worker_heartbeat_file
        except ConfigurationError as exc:
            typer.echo(f"unhealthy: {exc}", err=True)
            raise typer.Exit(1) from None
        if worker is None:
            worker = heartbeat is not None and heartbeat.exists()
    if not worker:
        problem = check_api(host, port)
    elif heartbeat is None:
        problem = "WORKER_HEARTBEAT_FILE is empty, so the worker keeps no heartbeat"
    else:
        problem = check_heartbeat(heartbeat, max_age=max_age)
    if problem is not None:
        typer.echo(f"unhealthy: {problem}", err=True)
        raise typer.Exit(1)
    typer.echo("healthy")


app.add_typer(keys_app, name="keys")
app.add_typer(projects_app, name="projects")
app.add_typer(emails_app, name="emails")
app.command()(bounces)
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(providers_app, name="providers")

if __name__ == "__main__":  # pragma: no cover
    app(prog_name="mailroom")
