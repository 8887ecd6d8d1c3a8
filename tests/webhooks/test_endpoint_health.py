"""An endpoint's health row is written only when its health changes (not after every job)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.webhooks.deliveries_repository import endpoint_health
from tests.support.api_calls import create_endpoint

DISABLE_AFTER = timedelta(days=5)


async def _note(
    sessions: async_sessionmaker[AsyncSession], endpoint_id: uuid.UUID, *, succeeded: bool
) -> tuple[str | None, str, object]:
    """Record one outcome; returns (disabled reason, the row's version, failing_since)."""
    async with sessions() as session:
        reason = await endpoint_health(
            session, endpoint_id, succeeded=succeeded, gone=False, disable_after=DISABLE_AFTER
        )
        await session.commit()
        row = (
            await session.execute(
                text(
                    "SELECT xmin::text AS version, failing_since FROM webhook_endpoints "
                    "WHERE id = :id"
                ),
                {"id": endpoint_id},
            )
        ).one()
    return reason, row.version, row.failing_since


async def test_the_health_row_is_written_only_when_the_health_changes(
    hooks: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    endpoint_id = uuid.UUID((await create_endpoint(hooks, "https://hooks.example.com/x"))["id"])
    _, healthy, failing_since = await _note(sessions, endpoint_id, succeeded=True)
    assert failing_since is None
    # Healthy and still healthy: the row is left alone, so concurrent jobs never queue on it.
    assert (await _note(sessions, endpoint_id, succeeded=True))[1] == healthy
    # The first failure is written; the ones after it are not.
    _, first_failure, failing_since = await _note(sessions, endpoint_id, succeeded=False)
    assert first_failure != healthy and failing_since is not None
    reason, version, still = await _note(sessions, endpoint_id, succeeded=False)
    assert reason is None and version == first_failure and still == failing_since
    # Recovery is written.
    _, recovered, failing_since = await _note(sessions, endpoint_id, succeeded=True)
    assert recovered != first_failure and failing_since is None


async def test_an_endpoint_failing_past_the_limit_is_disabled_with_its_reason(
    hooks: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    endpoint_id = uuid.UUID((await create_endpoint(hooks, "https://hooks.example.com/y"))["id"])
    await _note(sessions, endpoint_id, succeeded=False)
    async with sessions() as session:
        await session.execute(
            text(
                "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' "
                "WHERE id = :id"
            ),
            {"id": endpoint_id},
        )
        await session.commit()
    reason, _, _ = await _note(sessions, endpoint_id, succeeded=False)
    assert reason is not None and reason.startswith("Every attempt failed since")
