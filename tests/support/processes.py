"""The environment of a real `mailroom worker` process wired to a test's services."""

from __future__ import annotations

import os

from mailroom.settings import Settings
from tests.support.smtp_server import SmtpTestServer


def worker_env(settings: Settings, smtp_server: SmtpTestServer, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QUEUE_PREFIX": settings.queue_prefix,
        "QUEUE_NAME": settings.queue_name,
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "SMTP_SECURITY": "none",
        **extra,
    }
