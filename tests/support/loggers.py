"""Undo structlog's cache_logger_on_first_use for Mailroom's module-level loggers.

A test that runs a CLI command configures logging for real, and every Mailroom logger
first used afterwards keeps that configuration; `structlog.testing.capture_logs` in a
later test would then see nothing. Forgetting the cached loggers makes each test start
from whatever configuration is current.
"""

from __future__ import annotations

import sys

from structlog._config import BoundLoggerLazyProxy


def forget_cached_loggers() -> None:
    for name, module in list(sys.modules.items()):
        if name != "mailroom" and not name.startswith("mailroom."):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, BoundLoggerLazyProxy):
                vars(value).pop("bind", None)
