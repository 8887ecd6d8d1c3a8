"""The harnesses' own PostgreSQL access: the URLs they hand out, databases they copy and drop."""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


def plain_url(db_name: str, *, port: int = PG_PORT) -> str:
    """For asyncpg (the harnesses' own checks)."""
    return f"postgresql://{PG_USER}@{PG_HOST}:{port}/{db_name}"


def service_url(db_name: str, *, port: int = PG_PORT) -> str:
    """What Mailroom itself is given (it speaks asyncpg through SQLAlchemy)."""
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{port}/{db_name}"


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
    for name in names:
        for attempt in range(3):
            try:
                asyncio.run(drop_database(name))
                break
            except Exception as exc:  # noqa: BLE001 - report, retry, move on
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
                if attempt < 2:
                    time.sleep(1)
