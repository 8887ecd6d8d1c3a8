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
from mailroom.webhooks.events import emit_for_emails

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


Outcome = tuple[Literal["matched", "unmatched", "duplicate"], uuid.UUID | None]


async def record(
    session: AsyncSession, settings: Settings, events: list[FeedbackEvent], now: datetime
) -> Recorded:
    """Keep these events and apply the matched ones (see ``record_each``)."""
    return tally(await record_each(session, settings, events, now))


def tally(outcomes: list[Outcome]) -> Recorded:
    result = Recorded()
    for outcome, email_id in outcomes:
        if outcome == "matched":
            result.matched += 1
            assert email_id is not None
            result.emails.add(email_id)
        elif outcome == "unmatched":
            result.unmatched += 1
        else:
            result.duplicates += 1
    return result


async def record_each(
    session: AsyncSession, settings: Settings, events: list[FeedbackEvent], now: datetime
) -> list[Outcome]:
    """What became of each event, in order: a handful of statements whatever their number
    (one lookup of their emails, one insert, then ``apply_to_emails``)."""
    if not events:
        return []
    targets = await feedback_repository.find_emails(
        session,
        email_ids={e.email_id for e in events if e.email_id},
        message_ids={m for e in events if (m := normalize_message_id(e.message_id))},
    )
    found: list[Target | None] = []
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    repeated: set[int] = set()
    for index, event in enumerate(events):
        target = targets.get(event.email_id) if event.email_id else None
        target = target or targets.get(normalize_message_id(event.message_id) or "")
        found.append(target)
        if event.provider_event_id is not None:
            if event.provider_event_id in seen:  # twice in one go
                repeated.add(index)
                continue
            seen.add(event.provider_event_id)
        rows.append(_row(event, target, now))
    inserted = await feedback_repository.insert_many(session, rows)
    outcomes: list[Outcome] = []
    applied: list[tuple[Target, FeedbackEvent]] = []
    for index, (event, target) in enumerate(zip(events, found, strict=True)):
        new = index not in repeated and (
            event.provider_event_id is None or event.provider_event_id in inserted
        )
        if not new:
            outcomes.append(("duplicate", None))
        elif target is None:
            outcomes.append(("unmatched", None))
            log.info("feedback.unmatched", provider=event.provider, kind=event.kind)
        else:
            outcomes.append(("matched", target.id))
            applied.append((target, event))
    await apply_to_emails(session, settings, applied, now)
    return outcomes


def _row(event: FeedbackEvent, target: Target | None, now: datetime) -> dict[str, object]:
    why = event.parse_error
    if target is None and why is None:
        why = (
            "no email has this Message-ID"
            if event.message_id
            else "the report names no Message-ID Mailroom sent"
        )
    return {
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
        "parse_error": None if target else why,
        "raw": None if target else (event.raw or None) and event.raw[:MAX_RAW],
    }


_SUPPRESS = {"complained": Reason.COMPLAINT, "unsubscribed": Reason.UNSUBSCRIBE}
# The webhook event each kind of report emits (an unsubscribe only suppresses).
_EVENT = {
    "delivered": "email.delivered",
    "bounced": "email.bounced",
    "complained": "email.complained",
}


def _event_extra(event: FeedbackEvent) -> dict[str, object]:
    """What a recipient's report adds to its webhook event's data."""
    return {
        "recipient": event.recipient,
        "provider": event.provider,
        "bounceType": event.bounce_type,
        "diagnosticCode": event.diagnostic_code,
        "statusCode": event.status_code,
    }


async def apply_to_emails(
    session: AsyncSession,
    settings: Settings,
    matched: list[tuple[Target, FeedbackEvent]],
    now: datetime,
) -> None:
    """Every change feedback makes to emails and to the suppression list happens here: the
    log's flags, ``sent`` → ``bounced`` once every recipient hard-bounced, suppressions
    (hard bounce, complaint, unsubscribe), and the webhook events: one per report
    (``email.delivered``, ``email.bounced``, ``email.complained``), whose data's ``status``
    says whether the whole email is now ``bounced``."""
    if not matched:
        return
    suppress: list[suppressions.Suppress] = []
    bounced: set[uuid.UUID] = set()
    complained: set[uuid.UUID] = set()
    hard: dict[uuid.UUID, tuple[Target, set[str]]] = {}
    for email, event in matched:
        reason = Reason.HARD_BOUNCE if is_hard(event) else _SUPPRESS.get(event.kind)
        if reason is not None and event.recipient:
            suppress.append(
                suppressions.Suppress(email.project_id, event.recipient, reason, email.id)
            )
        if event.kind == "bounced":
            bounced.add(email.id)
            if is_hard(event) and event.recipient:
                hard.setdefault(email.id, (email, set()))[1].add(event.recipient.lower())
        elif event.kind == "complained":
            complained.add(email.id)
        log.info(
            "email.feedback",
            email_id=str(email.id),
            provider=event.provider,
            kind=event.kind,
            to=mask_address(event.recipient) if event.recipient else None,
        )
    await suppressions.suppress_many(session, settings, suppress, now=now)
    every = await _every_recipient_hard_bounced(session, hard)
    for email_id in await feedback_repository.bounce(session, every):
        log.warning("email.bounced", email_id=str(email_id))
    await feedback_repository.mark(session, bounced - every, bounced=True)
    await feedback_repository.mark(session, complained, complained=True)
    await emit_for_emails(
        session,
        [
            (email.id, _EVENT[event.kind], _event_extra(event))
            for email, event in matched
            if event.kind in _EVENT
        ],
    )


async def _every_recipient_hard_bounced(
    session: AsyncSession, hard: dict[uuid.UUID, tuple[Target, set[str]]]
) -> set[uuid.UUID]:
    """The emails whose every recipient (left-out ones aside) has now hard-bounced."""

    def sent_to(email: Target) -> set[str]:
        return {r.lower() for r in email.recipients} - {
            a.lower() for a in email.suppressed_recipients
        }

    done = {
        i for i, (email, now_hard) in hard.items() if sent_to(email) and sent_to(email) <= now_hard
    }
    rest = [i for i in hard if i not in done]
    if rest:
        earlier = await feedback_repository.hard_bounced(session, rest)
        for email_id in rest:
            email, now_hard = hard[email_id]
            if sent_to(email) and sent_to(email) <= now_hard | earlier.get(email_id, set()):
                done.add(email_id)
    return done
