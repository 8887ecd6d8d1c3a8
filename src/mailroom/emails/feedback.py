"""What delivery feedback does to an email: the use case behind POST /feedback/{provider}
and `mailroom bounces`.

Each event (one recipient's delivered, bounced, complained or unsubscribed) is kept in
``delivery_feedback``, matched or not; a provider's event id makes a redelivery a no-op.
A matched event then goes through ``apply_to_email``, the one place where feedback
changes an email: its flags, its status (``sent`` → ``bounced`` once every recipient has
hard-bounced) and the suppression list (hard bounce, complaint, unsubscribe).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails import feedback_repository
from mailroom.emails.feedback_repository import Target
from mailroom.log_config import mask_address
from mailroom.settings import Settings
from mailroom.suppressions import service as suppressions
from mailroom.suppressions.models import Reason

log = structlog.get_logger(__name__)

Kind = Literal["delivered", "bounced", "complained", "unsubscribed", "unknown"]
MAX_RAW = 64 * 1024  # characters of an unmatched report kept


@dataclass(frozen=True)
class FeedbackEvent:
    provider: str  # postmark, brevo, mailgun, ses, dsn
    kind: Kind
    recipient: str | None = None
    bounce_type: Literal["hard", "soft"] | None = None
    diagnostic_code: str | None = None
    status_code: str | None = None
    provider_event_id: str | None = None
    message_id: str | None = None
    email_id: uuid.UUID | None = None
    occurred_at: datetime | None = None
    # Why it could not be read (then kind is "unknown"), kept with the raw report.
    parse_error: str | None = None
    raw: str | None = None


@dataclass
class Recorded:
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    emails: set[uuid.UUID] = field(default_factory=set)


def normalize_message_id(value: str | None) -> str | None:
    """``abc@host`` or ``<abc@host>`` (with any spaces) → ``<abc@host>``, as stored."""
    if not value:
        return None
    inner = value.strip().strip("<>").strip()
    return f"<{inner}>" if inner else None


def is_hard(event: FeedbackEvent) -> bool:
    """A bounce that says the mailbox does not exist: suppress it. A 5.7.x status is a
    policy block (spam filter, blocklist), which says nothing about the address."""
    if event.kind != "bounced" or event.bounce_type != "hard":
        return False
    return not (event.status_code or "").startswith("5.7")


async def record(
    session: AsyncSession, settings: Settings, events: list[FeedbackEvent], now: datetime
) -> Recorded:
    result = Recorded()
    for event in events:
        target = await feedback_repository.find_email(
            session, email_id=event.email_id, message_id=normalize_message_id(event.message_id)
        )
        unmatched_why = event.parse_error
        if target is None and unmatched_why is None:
            unmatched_why = (
                "no email has this Message-ID"
                if event.message_id
                else ("the report names no Message-ID Mailroom sent")
            )
        inserted = await feedback_repository.insert(
            session,
            {
                "email_id": target.id if target else None,
                "project_id": target.project_id if target else None,
                "recipient": (event.recipient or None) and event.recipient[:320],
                "kind": event.kind,
                "bounce_type": event.bounce_type,
                "diagnostic_code": (event.diagnostic_code or None) and event.diagnostic_code[:2000],
                "status_code": (event.status_code or None) and event.status_code[:16],
                "provider": event.provider,
                "provider_event_id": event.provider_event_id,
                "message_id": (event.message_id or None) and event.message_id[:1000],
                "occurred_at": event.occurred_at,
                "received_at": now,
                "parse_error": None if target else unmatched_why,
                "raw": None if target else (event.raw or None) and event.raw[:MAX_RAW],
            },
        )
        if inserted is None:
            result.duplicates += 1
            continue
        if target is None:
            result.unmatched += 1
            log.info("feedback.unmatched", provider=event.provider, kind=event.kind)
            continue
        result.matched += 1
        result.emails.add(target.id)
        await apply_to_email(session, settings, target, event, now)
    return result


async def apply_to_email(
    session: AsyncSession, settings: Settings, email: Target, event: FeedbackEvent, now: datetime
) -> None:
    """Every change feedback makes to an email and to the suppression list happens here."""
    fields = {
        "email_id": str(email.id),
        "provider": event.provider,
        "kind": event.kind,
        "to": mask_address(event.recipient) if event.recipient else None,
    }
    if event.kind == "bounced":
        if is_hard(event) and event.recipient:
            await suppressions.suppress(
                session,
                settings,
                email.project_id,
                event.recipient,
                Reason.HARD_BOUNCE,
                email_id=email.id,
                now=now,
            )
            every = await _every_recipient_hard_bounced(session, email, event.recipient)
            # sent → bounced (the flag too); False if it is not `sent` (any more).
            if every and await feedback_repository.bounce(session, email.id):
                log.warning("email.bounced", **fields)
                return
        await feedback_repository.mark(session, email.id, bounced=True)
    elif event.kind == "complained":
        await feedback_repository.mark(session, email.id, complained=True)
        if event.recipient:
            await suppressions.suppress(
                session,
                settings,
                email.project_id,
                event.recipient,
                Reason.COMPLAINT,
                email_id=email.id,
                now=now,
            )
    elif event.kind == "unsubscribed" and event.recipient:
        await suppressions.suppress(
            session,
            settings,
            email.project_id,
            event.recipient,
            Reason.UNSUBSCRIBE,
            email_id=email.id,
            now=now,
        )
    log.info("email.feedback", **fields)


async def _every_recipient_hard_bounced(
    session: AsyncSession, email: Target, recipient: str
) -> bool:
    left_out = {a.lower() for a in email.suppressed_recipients}
    sent_to = {r.lower() for r in email.recipients} - left_out
    if sent_to == {recipient.lower()}:
        return True  # its only recipient: no need to read the others' outcomes
    return bool(sent_to) and sent_to <= await feedback_repository.hard_bounced(session, email.id)
