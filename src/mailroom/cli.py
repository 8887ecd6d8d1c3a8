"""The `mailroom` command."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
import uvloop

from mailroom.settings import ConfigurationError, Settings, get_settings

app = typer.Typer(
    help="Mailroom: queued email delivery with a complete, queryable log.", no_args_is_help=True
)


def load_cli_settings() -> Settings:
    """Settings for a command: a bad value ends it with the message and exit code 2."""
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from mailroom.log_config import configure_logging

    configure_logging(settings)
    return settings


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    from mailroom.gc_tuning import tune_for_serving

    tune_for_serving()
    # uvloop (it comes with uvicorn[standard]): a faster event loop for the API and worker.
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())


def _register_subcommands() -> None:
    from mailroom.auth.cli import keys_app
    from mailroom.emails.cli import emails_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(emails_app, name="emails")


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
        run_api_processes(host, port, processes)
        return
    from mailroom.api.app import create_app

    server = api_server(create_app(settings), host, port)
    _run(server.serve)


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
    from mailroom.worker.runner import DeliveryWorker, MissingSmtpHost, smtp_transport

    try:
        transport = smtp_transport(settings)
    except MissingSmtpHost as exc:
        typer.echo(f"Cannot start the worker: {exc}", err=True)
        raise typer.Exit(2) from None
    if processes > 1:
        from mailroom.worker.processes import run_worker_processes

        raise typer.Exit(
            run_worker_processes(processes, concurrency, metrics_port=settings.worker_metrics_port)
        )

    async def main() -> None:
        stop = _stop_event()
        async with DeliveryWorker(settings, concurrency=concurrency, transport=transport):
            await stop.wait()

    _run(main)


@app.command()
def migrate() -> None:
    """Apply database migrations (creating the database if it does not exist)."""
    settings = load_cli_settings()
    from mailroom.db.migrate import migrate as run_migrations

    asyncio.run(run_migrations(settings.database_url))
    typer.echo("Database is up to date.")


@app.command()
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
    from mailroom.emails.states import EmailStatus

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

    from mailroom.db.engine import create_engine, create_session_factory

    before = datetime.now(UTC) - age
    progress_every = max(1, 100_000 // settings.purge_batch_size)
    deleted_so_far = 0

    def progress(so_far: retention.PurgeResult) -> None:
        nonlocal deleted_so_far
        deleted_so_far = so_far.total
        if so_far.batches % progress_every == 0:
            typer.echo(f"… {so_far.total} deleted so far", err=True)

    async def main() -> dict[EmailStatus, int]:
        engine = create_engine(settings, pool_size=1)
        sessions = create_session_factory(engine)
        try:
            if dry_run:
                return dict(
                    await retention.count_purgeable(sessions, before=before, statuses=statuses)
                )
            done = await retention.purge(
                sessions,
                before=before,
                statuses=statuses,
                batch_size=settings.purge_batch_size,
                on_batch=progress,
            )
            return dict(done.deleted)
        finally:
            await engine.dispose()

    try:
        counts = asyncio.run(main())
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


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    smtp_port: Annotated[
        int, typer.Option(help="Port of the development inbox's SMTP server")
    ] = 1025,
) -> None:
    """Everything in one process: migrations, API on 127.0.0.1, worker, and a development inbox."""
    settings = load_cli_settings()
    from mailroom.devserver import DevServerError, run_dev

    try:
        _run(lambda: run_dev(settings, api_port=port, smtp_port=smtp_port))
    except DevServerError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


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


def _stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    app(prog_name="mailroom")
