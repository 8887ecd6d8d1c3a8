"""Migrations build exactly the schema the models describe; `migrate` creates the database."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import mailroom.emails.models
import mailroom.suppressions.models
import mailroom.webhooks.models  # noqa: F401
from mailroom.db.base import Base
from mailroom.db.migrate import create_database_if_missing, migrate


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_migrate_creates_a_missing_database_and_is_idempotent(database_url: str) -> None:
    name = f"mailroom_migrate_{secrets.token_hex(4)}"
    url = make_url(database_url).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        await migrate(rendered)
        await migrate(rendered)  # a second run changes nothing and does not fail
        assert await create_database_if_missing(rendered) is False
        engine = create_async_engine(rendered)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        await engine.dispose()
        assert {"emails", "delivery_attempts", "alembic_version"} <= tables
    finally:
        server = await asyncpg.connect(
            user=url.username, host=url.host, port=url.port, database="postgres"
        )
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()
