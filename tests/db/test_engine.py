"""Engines: pooled connections the server closed are replaced, not handed to a request;
a database opened for a command is closed after it."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailroom.db.engine import create_engine, open_database
from mailroom.settings import Settings
from tests.support.waiting import eventually


async def test_a_connection_the_server_terminated_is_replaced_on_checkout(
    settings: Settings,
) -> None:
    engine = create_engine(settings, pool_size=1)
    admin = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        # What a PostgreSQL restart does to every idle pooled connection.
        async with admin.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        async def closed() -> bool:
            return bool(driver.is_closed())

        await eventually(closed, bool, timeout=5, what="the driver to see the close")
        async with engine.connect() as connection:
            new_pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert new_pid != pid
    finally:
        await engine.dispose()
        await admin.dispose()


async def _backend_alive(admin: AsyncEngine, pid: int) -> bool:
    async with admin.connect() as connection:
        found = await connection.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
        return found.first() is not None


@pytest.mark.parametrize("fails", [False, True], ids=["returns", "raises"])
async def test_open_database_closes_its_connections_on_the_way_out(
    settings: Settings, fails: bool
) -> None:
    admin = create_engine(settings, pool_size=1)
    pid = 0
    try:
        with contextlib.suppress(LookupError):
            async with open_database(settings, pool_size=1) as sessions, sessions() as session:
                pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                if fails:
                    raise LookupError("the command failed")
        assert pid
        await eventually(
            lambda: _backend_alive(admin, pid), lambda alive: not alive, what="the pool closed"
        )
    finally:
        await admin.dispose()
