"""Migration 0006 on a database holding keys, emails and counters: all of it lands in the
project `default`, the counters carry on per project, and a downgrade folds them back."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mailroom.auth.keys import display_prefix, generate_key, hash_key
from mailroom.auth.service import KeyChecker
from mailroom.db.engine import create_session_factory
from mailroom.db.migrate import alembic_config, migrate
from mailroom.emails import log_repository
from mailroom.emails.log_repository import LogFilter
from mailroom.projects.access import ProjectRef
from mailroom.projects.models import DEFAULT_PROJECT_ID

DAY = datetime(2026, 11, 20, tzinfo=UTC)
STATUSES = ("sent", "sent", "failed", "queued", "cancelled", "scheduled", "sent")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    url = make_url(database_url).set(database=f"mailroom_projects_{secrets.token_hex(4)}")
    rendered = url.render_as_string(hide_password=False)
    yield rendered
    server = await asyncpg.connect(
        user=url.username, password=url.password, host=url.host, port=url.port, database="postgres"
    )
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await server.close()


async def _downgrade(database_url: str, revision: str) -> None:
    engine = create_async_engine(database_url)
    config = alembic_config(database_url)

    def downgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    try:
        async with engine.connect() as connection:
            await connection.run_sync(downgrade)
            await connection.commit()
    finally:
        await engine.dispose()


def _stamps(status: str, at: datetime) -> dict[str, datetime | None]:
    return {f"{s}_at": at if status == s else None for s in ("sent", "failed", "cancelled")}


async def _insert_emails(
    engine: AsyncEngine, n: int, *, key_id: uuid.UUID | None, project_id: uuid.UUID | None = None
) -> None:
    """n emails over DAY in one statement; ``project_id`` once the column exists."""
    columns = (
        "id, sender, to_addrs, recipients, subject, message_id, status, created_at, "
        "updated_at, sent_at, failed_at, cancelled_at, api_key_id"
    )
    rows: list[str] = []
    params: dict[str, object] = {}
    for i in range(n):
        status, at = STATUSES[i % len(STATUSES)], DAY + timedelta(minutes=37 * i)
        rows.append(
            f"(:id{i}, 's@example.com', :to, :to, 's', :mid{i}, :st{i}, :at{i}, :at{i}, "
            f":sent_at{i}, :failed_at{i}, :cancelled_at{i}, :key"
            + (", :project)" if project_id is not None else ")")
        )
        email_id = uuid.uuid4()
        params |= {f"id{i}": email_id, f"mid{i}": f"<{email_id}@x>", f"st{i}": status}
        params |= {f"at{i}": at} | {f"{k}{i}": v for k, v in _stamps(status, at).items()}
    params |= {"to": ["jane@example.com"], "key": key_id, "project": project_id}
    project = ", project_id" if project_id is not None else ""
    async with engine.begin() as connection:
        await connection.execute(
            text(f"INSERT INTO emails ({columns}{project}) VALUES {', '.join(rows)}"), params
        )


async def _cells(engine: AsyncEngine) -> dict[tuple[datetime, str], tuple[int, int]]:
    """(created, purged) per (bucket, status), every project's and every delta's together."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT bucket, status, sum(created), sum(purged) FROM ("
                "SELECT bucket, status, created, purged FROM email_counts UNION ALL "
                "SELECT bucket, status, created, purged FROM email_count_deltas) AS c "
                "GROUP BY 1, 2 HAVING sum(created) <> 0 OR sum(purged) <> 0"
            )
        )
        return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in result}


async def _present(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT status, sum(present) FROM ("
                "SELECT status, present FROM email_status_totals UNION ALL "
                "SELECT status, present FROM email_count_deltas) AS t "
                "GROUP BY 1 HAVING sum(present) <> 0"
            )
        )
        return {r[0]: int(r[1]) for r in result}


async def _scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.begin() as connection:
        return await connection.scalar(text(sql))


async def test_everything_lands_in_the_default_project_and_counting_carries_on(
    database: str,
) -> None:
    await migrate(database, "0005")
    engine = create_async_engine(database)
    try:
        key, key_id = generate_key(), uuid.uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scopes) "
                    "VALUES (:id, 'before-projects', :prefix, :hash, ARRAY['logs:read'])"
                ),
                {"id": key_id, "prefix": display_prefix(key), "hash": hash_key(key)},
            )
        await _insert_emails(engine, 30, key_id=key_id)
        assert await _scalar(engine, "SELECT mailroom_fold_counts()") > 0
        await _insert_emails(engine, 9, key_id=key_id)  # left as deltas, not folded
        async with engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM emails WHERE id IN (SELECT id FROM emails LIMIT 4)")
            )
        cells, present = await _cells(engine), await _present(engine)
        assert sum(present.values()) == 35

        await migrate(database)

        assert await _scalar(engine, "SELECT string_agg(name, ',') FROM projects") == "default"
        for table in ("api_keys", "emails", "email_counts", "email_status_totals"):
            others = await _scalar(
                engine, f"SELECT count(*) FROM {table} WHERE project_id <> '{DEFAULT_PROJECT_ID}'"
            )
            assert others == 0, table
        assert await _scalar(engine, "SELECT count(*) FROM email_count_deltas") > 0
        assert (await _cells(engine), await _present(engine)) == (cells, present)

        # The key from before projects is a key of `default`.
        sessions = create_session_factory(engine)
        principal = await KeyChecker(sessions, ttl=0).check(key)
        assert principal is not None
        assert principal.project == ProjectRef(DEFAULT_PROJECT_ID, "default")

        # Another project's emails, written by the new triggers, are counted apart.
        other = uuid.uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO projects (id, name) VALUES (:id, 'later')"), {"id": other}
            )
        await _insert_emails(engine, 5, key_id=None, project_id=other)
        start, end = DAY, DAY + timedelta(days=2)
        async with sessions() as session:
            counts = {
                p: await log_repository.count_emails(session, LogFilter(project_id=p))
                for p in (DEFAULT_PROJECT_ID, other, None)
            }
            reports = {
                p: await log_repository.count_created_between(session, start, end, project_id=p)
                for p in (DEFAULT_PROJECT_ID, other, None)
            }
        assert counts == {DEFAULT_PROJECT_ID: 35, other: 5, None: 40}
        assert (reports[DEFAULT_PROJECT_ID].total, reports[other].total) == (39, 5)
        assert reports[None].total == 44  # the purged four stay in their day's report
        assert await _scalar(engine, "SELECT mailroom_fold_counts()") > 0
        folded = await _scalar(
            engine, f"SELECT sum(present) FROM email_status_totals WHERE project_id = '{other}'"
        )
        assert folded == 5
        before_downgrade = await _cells(engine), await _present(engine)

        # Back to 0005: each project's counters add up into one; counting goes on.
        await _downgrade(database, "0005")
        assert (await _cells(engine), await _present(engine)) == before_downgrade
        await _insert_emails(engine, 2, key_id=None)
        assert sum((await _present(engine)).values()) == 42
        await migrate(database)
        assert sum((await _present(engine)).values()) == 42
    finally:
        await engine.dispose()
