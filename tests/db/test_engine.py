"""Pooled connections the server closed are replaced, not handed to a request."""

from __future__ import annotations

from sqlalchemy import text

from mailroom.db.engine import create_engine
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
