"""What every command shares: its settings, its event loop, and a database opened for it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from mailroom.settings import ConfigurationError, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")


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


def run_with_database(
    settings: Settings,
    work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]],
    *,
    pool_size: int = 1,
    report_unreachable: bool = True,
) -> T:
    """Run ``work`` on a database opened for this command and closed after it.

    A MailroomError (a key or email that does not exist, a move its state forbids) ends
    the command with its message and exit code 1, and so does a PostgreSQL or Redis that
    cannot be reached (one line saying which), unless the command reports that itself.
    """
    from mailroom.cli.unreachable import reachable
    from mailroom.db.engine import open_database
    from mailroom.errors import MailroomError

    async def main() -> T:
        async with open_database(settings, pool_size=pool_size) as sessions:
            return await work(sessions)

    guard = reachable(settings) if report_unreachable else contextlib.nullcontext()
    try:
        with guard:
            return asyncio.run(main())
    except MailroomError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None


def in_one_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction of a database opened for this command, committed
    when it returns (``mailroom keys …``, ``mailroom projects …``)."""
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
            typer.echo("The database is not migrated yet: run `mailroom migrate`.", err=True)
            raise typer.Exit(1) from None
        raise


def run_server(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a long-lived process (API, worker, dev) until it returns or Ctrl-C."""
    import uvloop

    from mailroom.gc_tuning import tune_for_serving

    tune_for_serving()
    # uvloop (it comes with uvicorn[standard]): a faster event loop for the API and worker.
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
