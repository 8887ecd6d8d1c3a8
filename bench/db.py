"""The counts the end-to-end runs poll (databases and connections: harness.db)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Progress:
    """Where the emails table stands during an end-to-end run."""

    total: int
    sent: int
    failed: int
    first_created: datetime | None
    last_created: datetime | None
    last_sent: datetime | None


async def progress(conn: asyncpg.Connection) -> Progress:
    row = await conn.fetchrow(
        """
        SELECT count(*) AS total,
               count(*) FILTER (WHERE status = 'sent') AS sent,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               min(created_at) AS first_created,
               max(created_at) AS last_created,
               max(sent_at) AS last_sent
        FROM emails
        """
    )
    assert row is not None
    return Progress(
        total=row["total"],
        sent=row["sent"],
        failed=row["failed"],
        first_created=row["first_created"],
        last_created=row["last_created"],
        last_sent=row["last_sent"],
    )
