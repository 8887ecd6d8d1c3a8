"""The benchmark's own PostgreSQL access: databases to create and drop, and the counts
the end-to-end runs poll."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bench.config import PG_SERVER


def plain_url(db_name: str) -> str:
    return f"postgresql://{PG_SERVER}/{db_name}"


def service_url(db_name: str) -> str:
    """What mailroom itself is given (it only speaks asyncpg through SQLAlchemy)."""
    return f"postgresql+asyncpg://{PG_SERVER}/{db_name}"


async def connect(db_name: str) -> asyncpg.Connection:
    return await asyncpg.connect(plain_url(db_name))


async def recreate_from_template(name: str, template: str) -> None:
    """`name`, dropped if it exists, then copied from `template` (schema, API key and all):
    every run starts from the same freshly migrated state in well under a second."""
    conn = await connect("postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await connect("postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def drop_databases(names: list[str]) -> None:
    """Drop each database, retrying a little; a failure is reported, never raised (this
    runs in a finally block, where an exception would hide the real one)."""
    import asyncio

    for name in names:
        for attempt in range(3):
            try:
                asyncio.run(drop_database(name))
                break
            except Exception as exc:  # noqa: BLE001 - report, retry, move on
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
                if attempt < 2:
                    time.sleep(1)


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
