"""SQL of delivery: claims, lease renewals, and the records of attempts.

Functions flush, never commit: the unit of work commits. Every status change is one
guarded ``UPDATE … WHERE status IN (…)``; the sources come from ``states`` so the SQL
and the state machine cannot drift apart.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.attachments import Attachment
from mailroom.emails.models import DeliveryAttempt, Email, EmailAttachment
from mailroom.emails.states import (
    CLAIM,
    DEFER,
    DELIVER,
    FAIL,
    RECLAIMABLE_STATUS,
    EmailStatus,
    Transition,
)
from mailroom.emails.workers_repository import abandoned

_CLAIM_SOURCES = sorted(s.value for s in CLAIM.sources)
# A job may fire a little before its email is due (BullMQ rounds delays, clocks differ);
# anything earlier than this is a stale duplicate and must not cut the backoff short. A
# scheduled email claimed early still waits for its sendAt (the worker's _not_before).
EARLY_CLAIM_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class Claimed:
    """An email a worker now owns, with the attempt it is about to make."""

    email: Email
    attempt: int
    reclaimed: bool  # taken over from a worker whose lease expired or heartbeat went stale
    attachments: tuple[Attachment, ...] = ()


async def claim(
    session: AsyncSession,
    email_ids: Sequence[uuid.UUID],
    lease: timedelta,
    *,
    takeover: timedelta,
    worker_id: uuid.UUID | None = None,
) -> list[Claimed]:
    """Move the claimable ones of these emails to ``sending``, for one attempt each.

    Claimable: due, or abandoned by their worker (lease run out, or heartbeat older than
    ``takeover``; see workers_repository). ``worker_id`` names the claiming process.
    """
    if not email_ids:
        return []
    target = (
        select(
            Email.id,
            Email.status.label("previous_status"),
            Email.updated_at.label("previous_claim_at"),
        )
        .where(
            Email.id.in_(email_ids),
            or_(
                and_(
                    Email.status.in_(_CLAIM_SOURCES),
                    or_(
                        Email.next_attempt_at.is_(None),
                        Email.next_attempt_at <= func.now() + EARLY_CLAIM_SLACK,
                    ),
                ),
                abandoned(takeover),
            ),
        )
        # Rows locked in id order, as every writer of several emails does (see _FINISH):
        # overlapping batches cannot deadlock. NO KEY UPDATE, the lock an UPDATE takes,
        # does not wait on the key-share locks of attempt inserts.
        .order_by(Email.id)
        .with_for_update(key_share=True)
        .cte("target")
    )
    table = cast(Table, Email.__table__)
    stmt = (
        update(table)
        .where(table.c.id == target.c.id)
        .values(
            status=CLAIM.target.value,
            attempts=table.c.attempts + 1,
            lease_expires_at=func.now() + lease,
            worker_id=worker_id,
            next_attempt_at=None,
            updated_at=func.now(),
        )
        .returning(*table.c, target.c.previous_status, target.c.previous_claim_at)
    )
    # A Core statement: the worker needs the values, not the ORM's identity map and
    # change tracking (which cost more than the UPDATE itself).
    result = await session.execute(stmt)
    rows = [
        (Email.from_row(row), row["previous_status"], row["previous_claim_at"])
        for row in result.mappings()
    ]
    claimed = [
        Claimed(email=email, attempt=email.attempts, reclaimed=previous == RECLAIMABLE_STATUS.value)
        for email, previous, _ in rows
    ]
    now = datetime.now(UTC)
    interrupted = [
        {
            "email_id": email.id,
            "attempt_number": email.attempts - 1,
            "started_at": previous_claim_at,
            "finished_at": now,
            "outcome": "interrupted",
            "duration_ms": 0,
            "message": (
                "The worker stopped during this attempt; the server may or may not "
                "have accepted the message."
            ),
        }
        for email, previous, previous_claim_at in rows
        if previous == RECLAIMABLE_STATUS.value
    ]
    if interrupted:
        # The previous attempt's worker vanished mid-send: record that it happened.
        await session.execute(_insert_attempt(), interrupted)
    return claimed


# Rows locked elsewhere (an attempt being recorded right now) are skipped, never waited
# for: a renewal holds nothing worth waiting for, and the record ends the lease anyway.
# = ANY(ARRAY(…)) runs the selection once.
_RENEW = text(
    """
    UPDATE emails SET lease_expires_at = now() + CAST(:lease AS interval)
    WHERE id = ANY(ARRAY(
        SELECT e.id FROM emails AS e
        JOIN unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS h(id, attempt)
            ON e.id = h.id AND e.attempts = h.attempt
        WHERE e.status = :sending
        FOR NO KEY UPDATE OF e SKIP LOCKED
    ))
    """
)


async def renew_leases(
    session: AsyncSession, held: Sequence[tuple[uuid.UUID, int]], lease: timedelta
) -> None:
    """Extend the leases of emails this worker still holds (the same attempt, still sending)."""
    if held:
        await session.execute(
            _RENEW,
            {
                "ids": [email_id for email_id, _ in held],
                "attempts": [attempt for _, attempt in held],
                "lease": lease,
                "sending": RECLAIMABLE_STATUS.value,
            },
        )


async def load_attachments(
    session: AsyncSession, email_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Attachment, ...]]:
    """Each email's attachments, in order, with their bytes (for building the message)."""
    if not email_ids:
        return {}
    stmt = (
        select(
            EmailAttachment.email_id,
            EmailAttachment.filename,
            EmailAttachment.content_type,
            EmailAttachment.content,
            EmailAttachment.content_id,
        )
        .where(EmailAttachment.email_id.in_(email_ids))
        .order_by(EmailAttachment.email_id, EmailAttachment.position)
    )
    found: dict[uuid.UUID, list[Attachment]] = {}
    for row in await session.execute(stmt):
        found.setdefault(row.email_id, []).append(
            Attachment(row.filename, row.content_type, row.content, row.content_id)
        )
    return {email_id: tuple(items) for email_id, items in found.items()}


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    smtp_code: int | None
    enhanced_code: str | None
    message: str | None
    refused_recipients: list[dict[str, Any]] | None
    provider: str | None = None


@dataclass(frozen=True)
class LastError:
    code: int | None
    enhanced_code: str | None
    message: str | None


@dataclass(frozen=True)
class Finished:
    """One attempt to record, and where it moves its email."""

    email_id: uuid.UUID
    transition: Transition
    attempt: AttemptRecord
    error: LastError | None
    next_attempt_at: datetime | None = None
    # Each recipient's outcome, when this attempt resolved them apart (None: unchanged).
    recipient_states: list[dict[str, Any]] | None = None


# Every transition out of an attempt starts from ``sending`` (see states), which lets
# one statement move a whole batch of emails whatever each one's outcome.
_FINISH_SOURCE = EmailStatus.SENDING
assert all(t.sources == {_FINISH_SOURCE} for t in (DELIVER, DEFER, FAIL))

# The emails are locked first, in id order, like the claim's: a claim that has already
# locked (and skipped) some of them waits on this statement instead of forming a cycle
# with it. Without the ordered lock the UPDATE took rows in the join's order, and a
# claim holding one of them while waiting on another deadlocked with it.
_FINISH = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT id FROM emails WHERE id = ANY(CAST(:ids AS uuid[]))
        ORDER BY id
        FOR NO KEY UPDATE
    )
    UPDATE emails AS e SET
        status = v.status,
        lease_expires_at = NULL,
        next_attempt_at = v.next_attempt_at,
        updated_at = now(),
        last_error_code = v.error_code,
        last_error_enhanced = v.error_enhanced,
        last_error_message = v.error_message,
        sent_at = CASE WHEN v.status = 'sent' THEN v.finished_at ELSE e.sent_at END,
        failed_at = CASE WHEN v.status = 'failed' THEN v.finished_at ELSE e.failed_at END,
        recipient_states = coalesce(CAST(v.recipient_states AS jsonb), e.recipient_states)
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]),
        CAST(:next_attempt_at AS timestamptz[]), CAST(:finished_at AS timestamptz[]),
        CAST(:error_code AS integer[]), CAST(:error_enhanced AS text[]),
        CAST(:error_message AS text[]), CAST(:recipient_states AS text[])
    ) AS v(id, attempt, status, next_attempt_at, finished_at, error_code, error_enhanced,
           error_message, recipient_states)
    JOIN locked ON locked.id = v.id
    WHERE e.id = v.id AND e.status = :source AND e.attempts = v.attempt
    RETURNING e.id
    """
)

# Attempts are append-only: one row per (email, attempt number), never rewritten.
_RECORD_ATTEMPTS = text(
    """
    INSERT INTO delivery_attempts (email_id, attempt_number, started_at, finished_at, outcome,
        smtp_code, enhanced_code, message, duration_ms, refused_recipients, provider)
    SELECT id, attempt, started_at, finished_at, outcome, code, enhanced, message, duration_ms,
        CAST(refused AS jsonb), provider
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:started_at AS timestamptz[]),
        CAST(:finished_at AS timestamptz[]), CAST(:outcomes AS text[]),
        CAST(:codes AS integer[]), CAST(:enhanced AS text[]), CAST(:messages AS text[]),
        CAST(:durations AS integer[]), CAST(:refused AS text[]), CAST(:providers AS text[])
    ) AS u(id, attempt, started_at, finished_at, outcome, code, enhanced, message,
           duration_ms, refused, provider)
    ON CONFLICT (email_id, attempt_number) DO NOTHING
    """
)


async def finish_attempts(session: AsyncSession, finished: Sequence[Finished]) -> set[uuid.UUID]:
    """Record the attempts and move their emails on, in two statements.

    Returns the emails this worker still owned; the others were taken over by a worker
    that found the lease expired, and it has already recorded this attempt as
    interrupted (the conflict clause keeps that row and drops this one).
    """
    if not finished:
        return set()
    errors = [f.error for f in finished]
    moved = await session.execute(
        _FINISH,
        {
            "ids": [f.email_id for f in finished],
            "attempts": [f.attempt.number for f in finished],
            "statuses": [f.transition.target.value for f in finished],
            "next_attempt_at": [f.next_attempt_at for f in finished],
            "finished_at": [f.attempt.finished_at for f in finished],
            "error_code": [e.code if e else None for e in errors],
            "error_enhanced": [e.enhanced_code if e else None for e in errors],
            "error_message": [e.message if e else None for e in errors],
            "recipient_states": [
                json.dumps(f.recipient_states) if f.recipient_states is not None else None
                for f in finished
            ],
            "source": _FINISH_SOURCE.value,
        },
    )
    owned = {row[0] for row in moved}
    attempts = [f.attempt for f in finished]
    await session.execute(
        _RECORD_ATTEMPTS,
        {
            "ids": [f.email_id for f in finished],
            "attempts": [a.number for a in attempts],
            "started_at": [a.started_at for a in attempts],
            "finished_at": [a.finished_at for a in attempts],
            "outcomes": [a.outcome for a in attempts],
            "codes": [a.smtp_code for a in attempts],
            "enhanced": [a.enhanced_code for a in attempts],
            "messages": [a.message for a in attempts],
            "durations": [_duration_ms(a) for a in attempts],
            "refused": [
                json.dumps(a.refused_recipients) if a.refused_recipients is not None else None
                for a in attempts
            ],
            "providers": [a.provider for a in attempts],
        },
    )
    return owned


def _duration_ms(attempt: AttemptRecord) -> int:
    return max(0, round((attempt.finished_at - attempt.started_at).total_seconds() * 1000))


def _insert_attempt() -> Any:
    return pg_insert(DeliveryAttempt).on_conflict_do_nothing(
        index_elements=[DeliveryAttempt.email_id, DeliveryAttempt.attempt_number]
    )
