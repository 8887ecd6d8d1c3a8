"""Idempotency-Key on POST /send: the same key and body replay the first response.

Kept in PostgreSQL, in the same transaction as the email it created, so a Redis flush
cannot forget it and a rolled-back request leaves no trace. Concurrent requests with
one key serialise on the primary key: the second waits for the first to commit, then
replays its response.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import IdempotencyKey

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


def request_fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def reserve(
    session: AsyncSession, api_key_id: uuid.UUID, key: str, fingerprint: str, *, now: datetime
) -> IdempotencyKey | None:
    """Claim the key for a new email; returns the earlier record instead if there is one.

    The caller completes the row (``complete``) in the same transaction; a record older
    than TTL is replaced.
    """
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < now - TTL,
        )
    )
    inserted = await session.execute(
        insert(IdempotencyKey)
        .values(
            api_key_id=api_key_id,
            key=key,
            request_hash=fingerprint,
            response={},
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.api_key_id, IdempotencyKey.key])
        .returning(IdempotencyKey.key)
    )
    if inserted.first() is not None:
        return None
    existing = await session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key
        )
    )
    return existing.scalar_one()


async def complete(
    session: AsyncSession,
    api_key_id: uuid.UUID,
    key: str,
    *,
    email_id: uuid.UUID | None,
    response: dict[str, Any],
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key)
        .values(email_id=email_id, response=response)
    )


async def purge_expired(session: AsyncSession, *, now: datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` records older than TTL (small batches keep locks short)."""
    expired = (
        select(IdempotencyKey.api_key_id, IdempotencyKey.key)
        .where(IdempotencyKey.created_at < now - TTL)
        .limit(limit)
    )
    result = await session.execute(
        delete(IdempotencyKey)
        .where(tuple_(IdempotencyKey.api_key_id, IdempotencyKey.key).in_(expired))
        .returning(IdempotencyKey.key)
    )
    return len(result.all())
