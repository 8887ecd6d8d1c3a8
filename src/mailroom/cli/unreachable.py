"""One line, not a traceback, when a command cannot reach PostgreSQL or Redis.

``reachable(settings)`` wraps a command's work: a failure to connect (refused, unknown
host, timed out, wrong password, no such database) ends it with exit code 1 and a line
naming the service, where it was looked for (host and port, never a password) and the
setting to check. Any other error goes on as before.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import typer

from mailroom.settings import Settings


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                yield from _chain(inner)
        current = current.__cause__ or current.__context__


def _is_redis(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("redis")


def _is_connection_failure(exc: BaseException) -> bool:
    from asyncpg.exceptions import (
        CannotConnectNowError,
        InvalidAuthorizationSpecificationError,
        InvalidCatalogNameError,
        InvalidPasswordError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(
        exc,
        OSError  # refused, reset, unknown host (socket.gaierror), timed out
        | CannotConnectNowError
        | InvalidAuthorizationSpecificationError
        | InvalidCatalogNameError
        | InvalidPasswordError
        | RedisConnectionError
        | RedisTimeoutError,
    )


def describe(exc: BaseException, settings: Settings) -> str | None:
    """The line to print when ``exc`` means a service cannot be reached, else None."""
    failure = next((e for e in _chain(exc) if _is_connection_failure(e)), None)
    if failure is None:
        return None
    redis = _is_redis(failure) or any(_is_redis(e) for e in _chain(exc))
    if redis:
        parts = urlsplit(settings.redis_url)
        name, where, setting = "Redis", f"{parts.hostname}:{parts.port or 6379}", "REDIS_URL"
    else:
        from sqlalchemy.engine import make_url

        url = make_url(settings.database_url)
        name, setting = "PostgreSQL", "DATABASE_URL"
        where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    if isinstance(failure, socket.gaierror):
        reason = "unknown host"
    else:
        reason = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
        reason = reason or type(failure).__name__
    return f"Cannot reach {name} at {where} ({reason}); check {setting} and that it is running."


@contextlib.contextmanager
def reachable(settings: Settings) -> Iterator[None]:
    """Turn a failure to reach PostgreSQL or Redis into one line and exit code 1."""
    try:
        yield
    except Exception as exc:
        line = describe(exc, settings)
        if line is None:
            raise
        typer.echo(line, err=True)
        raise typer.Exit(1) from None
