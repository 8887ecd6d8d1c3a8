"""Throwaway embedded servers for a test session whose PostgreSQL or Redis does not answer.

On a machine with neither installed, `make test` still runs the whole suite against real
servers: the embedded PostgreSQL and Valkey, in a temporary directory removed at the
end. Under pytest-xdist the controller starts them (pytest_configure runs there before
the workers), and the workers inherit their URLs through TEST_DATABASE_URL and
TEST_REDIS_URL, so one pair serves the session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.ports import answers
from mailroom.embedded.servers import embedded_servers


def _silent(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    return not answers(parts.hostname or "127.0.0.1", parts.port or default_port, timeout=2)


@dataclass
class Fallback:
    database_url: str
    redis_url: str
    report: list[str] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        self._stack.close()


def start_fallback(database_url: str, redis_url: str) -> Fallback:
    """Embedded servers in place of whichever of the two does not answer (none if both do)."""
    fallback = Fallback(database_url, redis_url)
    pg, valkey = _silent(database_url, 5432), _silent(redis_url, 6379)
    if not (pg or valkey):
        return fallback
    home = Path(tempfile.mkdtemp(prefix="mailroom-test-servers-"))
    fallback._stack.callback(shutil.rmtree, home, ignore_errors=True)
    try:
        servers = fallback._stack.enter_context(
            embedded_servers(home, postgres=pg, valkey=valkey, throwaway=True)
        )
    except EmbeddedServerError as exc:
        fallback.close()
        fallback.report.append(f"The test servers do not answer, and no embedded ones: {exc}")
        return fallback
    if servers.postgres is not None:
        fallback.database_url = servers.postgres.url("postgres")
        os.environ["TEST_DATABASE_URL"] = fallback.database_url
        fallback.report.append(
            f"TEST_DATABASE_URL does not answer: embedded PostgreSQL at {fallback.database_url}"
        )
    if servers.valkey is not None:
        fallback.redis_url = servers.valkey.url()
        os.environ["TEST_REDIS_URL"] = fallback.redis_url
        fallback.report.append(
            f"TEST_REDIS_URL does not answer: embedded Valkey at {fallback.redis_url}"
        )
    fallback.report.append(f"(temporary, in {home}, removed at the end)")
    return fallback
