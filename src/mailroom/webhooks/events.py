"""Event types and the one way to emit an event.

Status changes of emails emit theirs by themselves (triggers on ``emails``, see migrations
0009 and 0013): ``email.<status>`` in the transaction of the change, except into ``sending``
and out of it by a claim handed back unsent. What a provider reports about
one recipient afterwards (delivered, bounced, complained) is emitted by
``emit_for_emails`` in the transaction that records the report; anything else calls
``emit``. Each event is then delivered to every subscribed endpoint of the project.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.webhooks.models import EmailEvent

EMAIL_EVENT_TYPES: tuple[str, ...] = (
    "email.queued",
    "email.scheduled",
    "email.sent",
    "email.retrying",
    "email.failed",
    "email.cancelled",
    "email.delivered",
    "email.bounced",
    "email.complained",
    "email.suppressed",
)
TEST_EVENT_TYPE = "webhook.test"

# An email's event `data` as the status triggers build it (kept in step with migration 0009's
# _DATA, which cannot import it): `n` is the emails row as it is after the change.
EMAIL_DATA = """
    jsonb_build_object(
        'emailId', n.id,
        'messageId', n.message_id,
        'to', to_jsonb(n.to_addrs),
        'subject', n.subject,
        'status', n.status,
        'attempt', n.attempts,
        'error', CASE
            WHEN n.status IN ('queued', 'scheduled', 'sent', 'cancelled') THEN NULL
            WHEN n.last_error_code IS NULL AND n.last_error_message IS NULL THEN NULL
            ELSE jsonb_build_object(
                'code', n.last_error_code,
                'enhancedCode', n.last_error_enhanced,
                'message', n.last_error_message)
        END,
        'nextAttemptAt', n.next_attempt_at,
        'sandbox', n.sandbox
    )
"""

_EMIT_FOR_EMAILS = text(
    f"""
    INSERT INTO email_events (id, email_id, project_id, type, data, created_at)
    SELECT gen_random_uuid(), n.id, n.project_id, v.type, {EMAIL_DATA} || v.extra, now()
    FROM jsonb_to_recordset(CAST(:events AS jsonb))
         AS v(ord integer, email_id uuid, type text, extra jsonb)
    JOIN emails n ON n.id = v.email_id
    ORDER BY v.ord
    """
)


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


async def emit_for_emails(
    session: AsyncSession, events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]]
) -> None:
    """One event per ``(email id, type, extra)``, in this order, in one statement: the data
    a status event carries, read from the email as it is now, with ``extra`` added (for a
    recipient's report: ``recipient`` and what the provider said). Flushes, never commits."""
    for _, event_type, _ in events:
        if event_type not in EMAIL_EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
    if not events:
        return
    rows = [
        {"ord": i, "email_id": str(email_id), "type": event_type, "extra": extra}
        for i, (email_id, event_type, extra) in enumerate(events)
    ]
    await session.execute(_EMIT_FOR_EMAILS, {"events": json.dumps(rows)})


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
