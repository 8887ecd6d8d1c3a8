"""SQL of delivery feedback: its rows, the email it names, and the moves it causes.

Functions flush, never commit: the caller's transaction does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.models import DeliveryFeedback, Email
from mailroom.emails.states import BOUNCE


@dataclass(frozen=True)
class Target:
    """The email a report names, with what deciding its outcome needs."""

    id: uuid.UUID
    project_id: uuid.UUID
    status: str
    recipients: list[str]
    suppressed_recipients: list[str]


_TARGET = (
    Email.id,
    Email.project_id,
    Email.status,
    Email.recipients,
    Email.suppressed_recipients,
)


async def find_emails(
    session: AsyncSession, *, email_ids: set[uuid.UUID], message_ids: set[str]
) -> dict[object, Target]:
    """The emails these ids (a VERP return path, a provider's metadata) or Message-IDs
    name, keyed by both: one query on the primary key and the unique Message-ID index."""
    if not email_ids and not message_ids:
        return {}
    stmt = select(*_TARGET, Email.message_id).where(
        or_(Email.id.in_(list(email_ids)), Email.message_id.in_(list(message_ids)))
    )
    found: dict[object, Target] = {}
    for row in await session.execute(stmt):
        target = Target(*row[:5])
        found[target.id] = target
        found[row.message_id] = target
    return found


# Built once, the rows bound per call: compiled once and cached, and sent as one
# multi-row INSERT (SQLAlchemy's insertmanyvalues).
_INSERT = (
    pg_insert(DeliveryFeedback)
    .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
    .returning(DeliveryFeedback.provider_event_id)
)


async def insert_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert the rows; returns the provider event ids inserted (those recorded before are
    skipped). A row without a provider event id is always inserted."""
    if not rows:
        return set()
    result = await session.execute(_INSERT, list(rows))
    return {event_id for event_id in result.scalars() if event_id is not None}


async def mark(session: AsyncSession, email_ids: set[uuid.UUID], **flags: bool) -> None:
    """Set the log's ``bounced`` / ``complained`` flags (never the status: see ``bounce``)."""
    if email_ids:
        await session.execute(update(Email).where(Email.id.in_(sorted(email_ids))).values(**flags))


async def hard_bounced(
    session: AsyncSession, email_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, set[str]]:
    """The recipients (lower-cased) reported as hard bounces, per email."""
    stmt = select(DeliveryFeedback.email_id, func.lower(DeliveryFeedback.recipient)).where(
        DeliveryFeedback.email_id.in_(list(email_ids)),
        DeliveryFeedback.kind == "bounced",
        DeliveryFeedback.bounce_type == "hard",
        DeliveryFeedback.recipient.is_not(None),
    )
    found: dict[uuid.UUID, set[str]] = {}
    for email_id, recipient in await session.execute(stmt):
        found.setdefault(email_id, set()).add(recipient)
    return found


async def bounce(session: AsyncSession, email_ids: set[uuid.UUID]) -> list[uuid.UUID]:
    """sent → bounced (and the flag), guarded; returns the emails moved (those still
    ``sent``). Rows are locked in id order, as every writer of several emails does."""
    if not email_ids:
        return []
    stmt = (
        update(Email)
        .where(
            Email.id.in_(sorted(email_ids)),
            Email.status.in_([s.value for s in BOUNCE.sources]),
        )
        .values(status=BOUNCE.target.value, bounced=True, updated_at=func.now())
        .returning(Email.id)
    )
    return list((await session.execute(stmt)).scalars())


async def unmatched(
    session: AsyncSession, *, limit: int, after: tuple[datetime, int] | None
) -> Sequence[DeliveryFeedback]:
    """Reports that named no known email, newest first."""
    stmt = select(DeliveryFeedback).where(DeliveryFeedback.email_id.is_(None))
    if after is not None:
        stmt = stmt.where(tuple_(DeliveryFeedback.received_at, DeliveryFeedback.id) < after)
    stmt = stmt.order_by(DeliveryFeedback.received_at.desc(), DeliveryFeedback.id.desc())
    return list((await session.execute(stmt.limit(limit))).scalars())
