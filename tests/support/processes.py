"""The environment of a real `mailroom worker` process wired to a test's services.

No metrics server and no heartbeat file unless a test asks: their defaults (port 9102,
/tmp/mailroom-worker.heartbeat) are one per machine, and tests run in parallel processes.
"""

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
        "WORKER_METRICS_PORT": "0",
        "WORKER_HEARTBEAT_FILE": "",
        **extra,
    }
