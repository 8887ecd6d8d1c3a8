"""SQL of endpoints. Functions flush, never commit; every query is one project's."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.webhooks.models import WebhookEndpoint


async def add(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    session.add(endpoint)
    await session.flush()


async def count(session: AsyncSession, project_id: uuid.UUID) -> int:
    found = await session.scalar(
        select(func.count()).where(WebhookEndpoint.project_id == project_id)
    )
    return int(found or 0)


async def list_all(session: AsyncSession, project_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.project_id == project_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return rows.all()


async def get(
    session: AsyncSession, endpoint_id: uuid.UUID, project_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint | None:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.project_id == project_id
    )
    if lock:
        stmt = stmt.with_for_update()
    found: WebhookEndpoint | None = await session.scalar(stmt)
    return found


async def change(
    session: AsyncSession, endpoint_id: uuid.UUID, project_id: uuid.UUID, **values: Any
) -> WebhookEndpoint | None:
    stmt = (
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.project_id == project_id)
        .values(updated_at=func.now(), **values)
        .returning(WebhookEndpoint)
        .execution_options(synchronize_session=False)
    )
    found: WebhookEndpoint | None = await session.scalar(stmt)
    return found


async def remove(session: AsyncSession, endpoint_id: uuid.UUID, project_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.project_id == project_id)
        .returning(WebhookEndpoint.id)
    )
    return result.first() is not None


async def rotate(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    project_id: uuid.UUID,
    *,
    secret: str,
    previous_until: datetime | None,
) -> WebhookEndpoint | None:
    """The new secret; the current one signs too until ``previous_until`` (None: not at all)."""
    return await change(
        session,
        endpoint_id,
        project_id,
        secret=secret,
        previous_secret=WebhookEndpoint.secret if previous_until is not None else None,
        previous_secret_expires_at=previous_until,
    )
