"""Event types and the one way to emit an event.

Status changes of emails emit theirs by themselves (triggers on ``emails``, see migration
0008): ``email.<status>`` in the transaction of the change. Anything else that happens to
an email (a bounce, a complaint, a suppression) calls ``emit`` in the transaction that
records it; the event is then delivered to every subscribed endpoint of the project.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.webhooks.models import EmailEvent

EMAIL_EVENT_TYPES: tuple[str, ...] = (
    "email.queued",
    "email.scheduled",
    "email.sent",
    "email.retrying",
    "email.failed",
    "email.cancelled",
    "email.bounced",
    "email.complained",
    "email.suppressed",
)
TEST_EVENT_TYPE = "webhook.test"


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    seq: int
    email_id: uuid.UUID | None
    type: str
    data: dict[str, Any]
    created_at: datetime


async def emit(
    session: AsyncSession,
    *,
    email_id: uuid.UUID | None,
    project_id: uuid.UUID,
    type: str,
    data: dict[str, Any],
) -> uuid.UUID:
    """Record one event (flushes, never commits); returns its id (its `webhook-id`).

    ``data`` is the payload's ``data``: for an email's event, the fields the status events
    carry (emailId, messageId, to, subject, status, attempt, error) plus its own.
    """
    if type not in EMAIL_EVENT_TYPES and type != TEST_EVENT_TYPE:
        raise ValueError(f"unknown event type {type!r}")
    event_id = uuid.uuid4()
    await session.execute(
        insert(EmailEvent).values(
            id=event_id, email_id=email_id, project_id=project_id, type=type, data=data
        )
    )
    return event_id


async def email_events(session: AsyncSession, email_id: uuid.UUID) -> Sequence[Event]:
    """One email's events, in the order they happened."""
    rows = await session.execute(
        select(
            EmailEvent.id,
            EmailEvent.seq,
            EmailEvent.email_id,
            EmailEvent.type,
            EmailEvent.data,
            EmailEvent.created_at,
        )
        .where(EmailEvent.email_id == email_id)
        .order_by(EmailEvent.seq)
    )
    return [Event(r.id, r.seq, r.email_id, r.type, r.data, r.created_at) for r in rows]


def payload(event_type: str, created_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """What a receiver gets: ``{type, timestamp, data}``."""
    return {"type": event_type, "timestamp": _iso(created_at), "data": data}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
