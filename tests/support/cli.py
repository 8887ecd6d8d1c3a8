"""The environment a `mailroom` command runs in under test, and what it changes put back.

The commands read their settings from the environment (through get_settings, which caches
them) and configure logging for real, so each test points them at its own database and
Redis and restores the root logger and structlog's configuration afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import structlog

from mailroom.settings import Settings, get_settings


@contextmanager
def cli_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, **extra_env: str | None
) -> Iterator[None]:
    """Set DATABASE_URL from `settings`, then each of `extra_env` (None unsets the variable)."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    for name, value in extra_env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog_config = structlog.get_config()
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)
