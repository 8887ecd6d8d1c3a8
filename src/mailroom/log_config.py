"""Structured logging: one pipeline (structlog) for Mailroom, uvicorn, SQLAlchemy and bullmq.

Console output for people, one JSON object per line with LOG_FORMAT=json. Event
names are dotted (``email.sent``); context such as ``request_id`` and ``email_id``
is bound with contextvars so every line about an email carries it.
"""

from __future__ import annotations

import logging
import sys

import structlog
from asgi_correlation_id import correlation_id

from mailroom.settings import Settings


def _add_request_id(
    logger: object, method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The HTTP request's id (from asgi-correlation-id), unless a job bound its own."""
    request_id = correlation_id.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


_NEVER_LOGGED = frozenset(
    {
        "authorization",
        "password",
        "smtp_password",
        "api_key",
        "secret",
        "token",
        "text",
        "html",
        "body",
    }
)


def mask_address(address: str) -> str:
    """``jane@example.com`` → ``j***@example.com``: enough to recognise, not to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def _redact(
    logger: object, method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Last line of defence: fields that must never reach a log are blanked whoever sets them."""
    for name in _NEVER_LOGGED.intersection(event):
        event[name] = "[redacted]"
    return event


def configure_logging(settings: Settings) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        _redact,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if settings.log_format == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Third-party loggers go through the same handler; their chatter is kept down.
    for name, level in (
        ("uvicorn.access", logging.WARNING),
        ("sqlalchemy", logging.WARNING),
        ("bullmq", logging.INFO),
        ("aiosmtpd", logging.WARNING),
        ("mail.log", logging.WARNING),
        ("alembic", logging.WARNING),
    ):
        logging.getLogger(name).setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
