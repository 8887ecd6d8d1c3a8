"""Which servers `mailroom dev` uses: the configured ones, ones at the defaults, or embedded.

Each of PostgreSQL and Redis on its own: a URL set in the environment or `.env` is used
as it is; otherwise a server answering at the default address is used; otherwise an
embedded one is started. `--embedded` starts both regardless, `--no-embedded` never.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from mailroom.embedded.binaries import find_binaries
from mailroom.embedded.errors import EmbeddedServerError
from mailroom.embedded.ports import answers
from mailroom.embedded.servers import embedded_servers
from mailroom.settings import Settings, get_settings, load_settings

DEV_HOME = Path(".mailroom")
_FIELDS = (("PostgreSQL", "database_url"), ("Redis", "redis_url"))


def _unset_and_silent(settings: Settings, field: str, url: str, default_port: int) -> bool:
    if field in settings.model_fields_set:
        return False
    parts = urlsplit(url)
    return not answers(parts.hostname or "127.0.0.1", parts.port or default_port)


def _shown(url: str) -> str:
    if url.startswith("postgresql"):
        return make_url(url).render_as_string(hide_password=True)
    parts = urlsplit(url)
    netloc = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return parts._replace(netloc=netloc).geturl()


@contextlib.contextmanager
def dev_services(
    settings: Settings, embedded: bool | None, *, home: Path = DEV_HOME
) -> Iterator[tuple[Settings, list[str]]]:
    """The settings `mailroom dev` runs with, and lines saying which servers they name."""
    if embedded is None:
        pg = _unset_and_silent(settings, "database_url", settings.database_url, 5432)
        valkey = _unset_and_silent(settings, "redis_url", settings.redis_url, 6379)
    else:
        pg = valkey = embedded
    if not (pg or valkey):
        yield settings, [_external(name, settings, field) for name, field in _FIELDS]
        return
    if embedded is None:
        try:
            find_binaries()
        except EmbeddedServerError as exc:
            missing = [
                name for name, wanted in (("DATABASE_URL", pg), ("REDIS_URL", valkey)) if wanted
            ]
            raise EmbeddedServerError(
                f"{' and '.join(missing)} not set and nothing answers at the default address, "
                f"so `mailroom dev` would start embedded servers, but: {exc}"
            ) from None
    with embedded_servers(home, postgres=pg, valkey=valkey) as servers:
        overrides: dict[str, str] = {}
        lines: list[str] = []
        if servers.postgres is not None:
            overrides["DATABASE_URL"] = servers.postgres.url("mailroom")
            lines.append(
                f"PostgreSQL: embedded, {_shown(overrides['DATABASE_URL'])}, "
                f"data in {home / 'postgres'} (log {home / 'postgres.log'})"
            )
        else:
            lines.append(_external("PostgreSQL", settings, "database_url"))
        if servers.valkey is not None:
            overrides["REDIS_URL"] = servers.valkey.url()
            lines.append(
                f"Redis: embedded Valkey, {overrides['REDIS_URL']}, "
                f"data in {home / 'valkey'} (log {home / 'valkey.log'})"
            )
        else:
            lines.append(_external("Redis", settings, "redis_url"))
        # Through the environment, so every get_settings() in this process sees them.
        os.environ.update(overrides)
        get_settings.cache_clear()
        yield load_settings(), lines


def _external(name: str, settings: Settings, field: str) -> str:
    url = getattr(settings, field)
    origin = field.upper() if field in settings.model_fields_set else "the default address"
    return f"{name}: {_shown(url)} (from {origin})"
