"""Delivering: what the worker does with the database around each send.

Claim the emails of a job (guarded, leased, with their attachments), renew the leases
while the sends take, record each attempt and move its email on (sent, retrying with
backoff, failed), and sweep for emails whose dispatch Redis may have lost. The worker
sees the database only through these functions and the types re-exported here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails import (
    delivery_repository,
    idempotency,
    recipients,
    release_repository,
    sweeper_repository,
    workers_repository,
)
from mailroom.emails.delivery_repository import (
    EARLY_CLAIM_SLACK,
    AttemptRecord,
    Claimed,
    Finished,
    LastError,
)
from mailroom.emails.message import envelope_addresses
from mailroom.emails.retry import Decision, backoff_delay, decide
from mailroom.emails.states import DEFER, DELIVER, FAIL, PACE
from mailroom.queue.jobs import DeliveryJob
from mailroom.settings import Settings
from mailroom.suppressions import service as suppressions
from mailroom.suppressions.models import Reason
from mailroom.transport.base import Outcome, SendResult
from mailroom.unit_of_work import UnitOfWork

__all__ = [
    "EARLY_CLAIM_SLACK",
    "MAX_STORED_REPLY",
    "AttemptResult",
    "Claimed",
    "Recorded",
    "claim_for_delivery",
    "record_attempts",
    "renew_leases",
    "sweep",
]

MAX_STORED_REPLY = 1000  # characters of server text kept per attempt


async def claim_for_delivery(
    uow: UnitOfWork,
    email_ids: Sequence[uuid.UUID],
    *,
    settings: Settings,
    worker_id: uuid.UUID | None = None,
) -> list[Claimed]:
    """Claim whichever of these emails are due; the others are finished or owned elsewhere.

    ``worker_id``: the claiming process's row in the worker registry, if it keeps one.
    """
    claimed = await delivery_repository.claim(
        uow.session,
        email_ids,
        timedelta(seconds=settings.sending_lease),
        takeover=timedelta(seconds=settings.worker_takeover_after),
        worker_id=worker_id,
    )
    with_files = [c.email.id for c in claimed if c.email.attachment_count]
    if not with_files:
        return claimed
    files = await delivery_repository.load_attachments(uow.session, with_files)
    return [replace(c, attachments=files.get(c.email.id, ())) for c in claimed]


async def renew_leases(
    session: AsyncSession, held: Sequence[tuple[uuid.UUID, int]], lease: timedelta
) -> None:
    """Extend the leases of the emails a worker still holds: (email id, attempt) each.

    An email recorded meanwhile, or taken over, is no longer held and keeps its state.
    """
    await delivery_repository.renew_leases(session, held, lease)


@dataclass(frozen=True)
class AttemptResult:
    """What one claimed email's attempt came to, ready to be recorded."""

    claimed: Claimed
    result: SendResult
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class Recorded:
    decision: Decision
    applied: bool  # False: another worker took the email over meanwhile


async def record_attempts(
    uow: UnitOfWork,
    attempts: Sequence[AttemptResult],
    *,
    settings: Settings,
    rng: random.Random,
) -> list[Recorded]:
    """Log the attempts and move each email on, in one transaction, whatever their outcomes.

    A paced one (a provider's limit: no attempt made) is handed back instead, to wait.
    """
    paced = [a for a in attempts if a.result.outcome is Outcome.PACED]
    released = await _release(uow, paced)
    decisions: list[Decision] = []
    finished: list[Finished] = []
    for a in attempts:
        if a.result.outcome is Outcome.PACED:
            continue
        # Counted from the last manual retry: each retry gets MAX_ATTEMPTS afresh.
        number = a.claimed.attempt - a.claimed.email.attempts_before_retry
        decision = decide(
            a.result,
            number,
            max_attempts=settings.max_attempts,
            base=settings.retry_backoff_base,
            cap=settings.retry_backoff_max,
            rng=rng,
        )
        decision, states = _per_recipient(a, decision, number, settings=settings, rng=rng)
        next_attempt_at = None
        if decision.transition is DEFER and decision.delay is not None:
            next_attempt_at = a.finished_at + timedelta(seconds=decision.delay)
        decisions.append(decision)
        finished.append(
            Finished(
                email_id=a.claimed.email.id,
                transition=decision.transition,
                attempt=_attempt_record(a),
                error=_last_error(a.result),
                next_attempt_at=next_attempt_at,
                recipient_states=states,
            )
        )
    owned = await delivery_repository.finish_attempts(uow.session, finished)
    recorded: list[Recorded] = []
    done = iter(decisions)
    for a in attempts:
        if a.result.outcome is Outcome.PACED:
            recorded.append(released[a.claimed.email.id])
            continue
        decision = next(done)
        applied = a.claimed.email.id in owned
        if applied:
            await _suppress_unknown_mailboxes(uow, a, settings)
        if applied and decision.transition is DEFER and decision.delay is not None:
            uow.dispatch_after_commit(
                DeliveryJob(
                    a.claimed.email.id,
                    attempt=a.claimed.attempt + 1,
                    request_id=a.claimed.email.request_id,
                    delay=decision.delay,
                )
            )
        recorded.append(Recorded(decision, applied))
    return recorded


def is_hard_bounce(code: int | None, enhanced_code: str | None) -> bool:
    """A permanent refusal of the mailbox itself (RFC 3463 5.1.x: no such user, bad
    address), not a 5.7.x policy block, which says nothing about the address."""
    return code is not None and 500 <= code < 600 and (enhanced_code or "").startswith("5.1.")


async def _suppress_unknown_mailboxes(
    uow: UnitOfWork, attempt: AttemptResult, settings: Settings
) -> None:
    """Put the recipients the server refused at RCPT as unknown mailboxes on the list, in
    the transaction that records the attempt."""
    email = attempt.claimed.email
    for refusal in attempt.result.refused:
        if is_hard_bounce(refusal.code, refusal.enhanced_code):
            await suppressions.suppress(
                uow.session,
                settings,
                email.project_id,
                refusal.recipient,
                Reason.HARD_BOUNCE,
                email_id=email.id,
                now=attempt.finished_at,
            )


def _per_recipient(
    a: AttemptResult, decision: Decision, number: int, *, settings: Settings, rng: random.Random
) -> tuple[Decision, list[recipients.State] | None]:
    """The decision once recipients are told apart, and their states (None: unchanged).

    Recipients the server deferred while it accepted others are retried on their own
    (DEFER, under the usual backoff and attempt limit); when no attempt is left they are
    failed, and the email is `sent` if any recipient ever was accepted.
    """
    email = a.claimed.email
    try:
        _, envelope = envelope_addresses(email)
    except (ValueError, TypeError):
        return decision, None  # the attempt failed building the message: nothing to split
    addressed = recipients.to_send(email.recipient_states, envelope)
    states = recipients.after_attempt(
        email.recipient_states,
        envelope,
        addressed,
        a.result,
        accepted=a.result.outcome is Outcome.ACCEPTED,
    )
    if states is None:
        return decision, None
    deferred = recipients.any_with(states, recipients.DEFERRED)
    give_up = decision.transition is FAIL or (deferred and number >= settings.max_attempts)
    if give_up:
        states = recipients.settle(states, give_up=True)
        sent = recipients.any_with(states, recipients.SENT)
        return Decision(DELIVER if sent else FAIL), states
    if deferred and decision.transition is DELIVER:
        delay = backoff_delay(
            number, base=settings.retry_backoff_base, cap=settings.retry_backoff_max, rng=rng
        )
        return Decision(DEFER, delay), states
    return decision, states


async def _release(uow: UnitOfWork, paced: Sequence[AttemptResult]) -> dict[uuid.UUID, Recorded]:
    """Hand paced emails back, each to wait until its provider has room (result.retry_after)."""
    releases = [
        release_repository.Release(
            a.claimed.email.id,
            a.claimed.attempt,
            a.finished_at + timedelta(seconds=a.result.retry_after or 0.0),
        )
        for a in paced
    ]
    owned = await release_repository.release(uow.session, releases)
    recorded: dict[uuid.UUID, Recorded] = {}
    for a, r in zip(paced, releases, strict=True):
        delay = (r.next_attempt_at - a.finished_at).total_seconds()
        applied = r.email_id in owned
        if applied:
            uow.dispatch_after_commit(
                DeliveryJob(
                    r.email_id,
                    attempt=a.claimed.attempt,
                    request_id=a.claimed.email.request_id,
                    delay=delay,
                    paced_until_ms=round(r.next_attempt_at.timestamp() * 1000),
                )
            )
        recorded[r.email_id] = Recorded(Decision(PACE, delay), applied)
    return recorded


def _attempt_record(a: AttemptResult) -> AttemptRecord:
    result = a.result
    refused = [
        {
            "recipient": r.recipient,
            "code": r.code,
            "enhancedCode": r.enhanced_code,
            "message": r.message[:MAX_STORED_REPLY],
        }
        for r in result.refused
    ]
    return AttemptRecord(
        number=a.claimed.attempt,
        started_at=a.started_at,
        finished_at=a.finished_at,
        outcome=result.outcome.value,
        smtp_code=result.code,
        enhanced_code=result.enhanced_code,
        message=result.message[:MAX_STORED_REPLY] or None,
        refused_recipients=refused or None,
        provider=result.provider,
    )


def _last_error(result: SendResult) -> LastError | None:
    if result.outcome is Outcome.ACCEPTED:
        if not result.refused:
            return None
        first = result.refused[0]
        return LastError(
            first.code,
            first.enhanced_code,
            f"Refused {first.recipient}: {first.message}"[:MAX_STORED_REPLY],
        )
    return LastError(result.code, result.enhanced_code, result.message[:MAX_STORED_REPLY] or None)


async def sweep(uow: UnitOfWork, *, settings: Settings, lock_key: int) -> Sequence[DeliveryJob]:
    """One sweeper pass (one sweeper at a time, by an advisory lock).

    Returns the jobs of emails whose dispatch may have been lost (the caller re-dispatches
    those Redis lacks), and forgets idempotency keys older than 24 hours.
    """
    if not await sweeper_repository.try_sweeper_lock(uow.session, lock_key):
        return ()
    stranded = await sweeper_repository.find_stranded(
        uow.session,
        grace=timedelta(seconds=settings.sweep_grace),
        takeover=timedelta(seconds=settings.worker_takeover_after),
        limit=settings.sweep_batch_size,
    )
    # Rows of workers silent for a whole lease: their emails are abandoned either way.
    await workers_repository.forget_dead(
        uow.session, older_than=timedelta(seconds=max(settings.sending_lease, 3600))
    )
    jobs = [
        DeliveryJob(
            s.email_id,
            attempt=s.next_attempt,
            request_id=s.request_id,
            queued_as=s.batch_job_id if s.next_attempt == 1 else None,
        )
        for s in stranded
    ]
    await idempotency.purge_expired(uow.session, now=datetime.now(UTC))
    return jobs
