"""Undo structlog's cache_logger_on_first_use for Mailroom's module-level loggers.

A test that runs a CLI command configures logging for real, and every Mailroom logger
first used afterwards keeps that configuration; `structlog.testing.capture_logs` in a
later test would then see nothing. Forgetting the cached loggers makes each test start
from whatever configuration is current.
"""

from __future__ import annotations

import sys

from structlog._config import BoundLoggerLazyProxy

# The module-level loggers found so far, and how many modules were loaded when they were
# looked for: this runs before every test, and walking every module's globals each time
# cost more than a millisecond a test.
_found: list[BoundLoggerLazyProxy] = []
_modules_seen = -1


def _mailroom_loggers() -> list[BoundLoggerLazyProxy]:
    global _modules_seen
    if len(sys.modules) != _modules_seen:
        _modules_seen = len(sys.modules)
        _found[:] = [
            value
            for name, module in list(sys.modules.items())
            if name == "mailroom" or name.startswith("mailroom.")
            for value in list(vars(module).values())
            if isinstance(value, BoundLoggerLazyProxy)
        ]
    return _found


def forget_cached_loggers() -> None:
    for proxy in _mailroom_loggers():
        vars(proxy).pop("bind", None)
