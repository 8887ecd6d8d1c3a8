"""Use cases of the email log. The API and the worker call these; they own every state change."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails import idempotency, repository
from mailroom.emails.addresses import parse_mailbox
from mailroom.emails.log_query import LogQuery, day_bounds, encode_cursor
from mailroom.emails.message import new_message_id
from mailroom.emails.models import Email
from mailroom.emails.repository import AttemptRecord, Claimed, Finished, LastError, Position
from mailroom.emails.retry import Decision, decide
from mailroom.emails.schemas import (
    BatchItemError,
    BatchItemResult,
    DailySummary,
    DeliveryAttemptItem,
    EmailDetail,
    EmailError,
    EmailLogItem,
    EmailLogPage,
    FieldError,
    Pagination,
    SendAccepted,
    SendBatchAccepted,
    SendEmailRequest,
)
from mailroom.emails.states import DEFER, EmailStatus
from mailroom.errors import IdempotencyKeyReused, InvalidRequest, NotFound, field_errors
from mailroom.log_config import mask_address
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Outcome, SendResult
from mailroom.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

MAX_STORED_REPLY = 1000  # characters of server text kept per attempt


# -- accepting -----------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    response: SendAccepted
    replayed: bool  # an earlier response to the same Idempotency-Key


async def send_email(
    uow: UnitOfWork,
    request: SendEmailRequest,
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID,
    idempotency_key: str | None,
) -> Acceptance:
    """POST /send: accept the email, or replay the answer to an earlier identical request."""
    if idempotency_key is not None:
        fingerprint = idempotency.request_fingerprint(
            request.model_dump(mode="json", by_alias=True)
        )
        earlier = await idempotency.reserve(
            uow.session, api_key_id, idempotency_key, fingerprint, now=datetime.now(UTC)
        )
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise _key_reused()
            return Acceptance(SendAccepted.model_validate(earlier.response), replayed=True)
    email = await accept_email(
        uow, request, settings=settings, request_id=request_id, api_key_id=api_key_id
    )
    response = SendAccepted(
        id=email.id,
        status=EmailStatus(email.status),
        message_id=email.message_id,
        created_at=email.created_at,
    )
    if idempotency_key is not None:
        await idempotency.complete(
            uow.session,
            api_key_id,
            idempotency_key,
            email_id=email.id,
            response=response.model_dump(mode="json", by_alias=True),
        )
    return Acceptance(response, replayed=False)


async def accept_email(
    uow: UnitOfWork,
    request: SendEmailRequest,
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID | None = None,
) -> Email:
    """Store a new email as ``queued``; its first delivery job goes out after the commit."""
    email = _new_email(request, settings, request_id, api_key_id, datetime.now(UTC))
    await repository.add_emails(uow.session, [_columns(email)])
    uow.dispatch_after_commit(DeliveryJob(email.id, attempt=1, request_id=request_id))
    _log_accepted(email)
    return email


async def send_batch(
    uow: UnitOfWork,
    items: Sequence[object],
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID,
    idempotency_key: str | None,
) -> BatchAcceptance:
    """POST /send/batch: validate each email on its own; store the valid ones in one go."""
    now = datetime.now(UTC)
    results: list[BatchItemResult] = []
    emails: list[Email] = []
    # What each email means (as /send fingerprints it), so "to": "x" and "to": ["x"]
    # make the same request; an invalid item counts as written.
    meanings: list[object] = []
    for index, item in enumerate(items):
        try:
            request = SendEmailRequest.model_validate(item)
        except ValidationError as exc:
            meanings.append(item)
            details = field_errors(exc.errors(), prefix=f"emails[{index}]")
            results.append(
                BatchItemResult(
                    index=index,
                    error=BatchItemError(
                        code=InvalidRequest.code,
                        message=f"Invalid email. {details[0]['field']}: {details[0]['message']}",
                        details=[FieldError.model_validate(d) for d in details],
                    ),
                )
            )
            continue
        if idempotency_key is not None:
            meanings.append(request.model_dump(mode="json", by_alias=True))
        email = _new_email(request, settings, request_id, api_key_id, now)
        emails.append(email)
        results.append(
            BatchItemResult(
                index=index,
                id=email.id,
                status=EmailStatus.QUEUED,
                message_id=email.message_id,
                created_at=now,
            )
        )
    if idempotency_key is not None:
        fingerprint = idempotency.request_fingerprint({"emails": meanings})
        earlier = await idempotency.reserve(
            uow.session, api_key_id, idempotency_key, fingerprint, now=datetime.now(UTC)
        )
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise _key_reused()
            return BatchAcceptance(
                SendBatchAccepted.model_validate(earlier.response), replayed=True
            )
    if not emails:
        details = [d.model_dump() for r in results if r.error for d in r.error.details]
        first = details[0]
        raise InvalidRequest(
            f"No email in the batch is valid; nothing was stored. "
            f"{first['field']}: {first['message']}",
            details=details,
        )
    # A few jobs of many emails each: the queue's cost per email all but vanishes, and
    # the jobs still spread over every worker process.
    size = settings.batch_job_size
    for start in range(0, len(emails), size):
        chunk = emails[start : start + size]
        job = DeliveryBatch(tuple(e.id for e in chunk), request_id=request_id)
        for email in chunk:
            email.batch_job_id = job.job_id
        uow.dispatch_after_commit(job)
    await repository.add_emails(uow.session, [_columns(e) for e in emails])
    log.info("email.batch_accepted", accepted=len(emails), rejected=len(items) - len(emails))
    response = SendBatchAccepted(
        accepted=len(emails), rejected=len(items) - len(emails), data=results
    )
    if idempotency_key is not None:
        await idempotency.complete(
            uow.session,
            api_key_id,
            idempotency_key,
            email_id=None,
            response=response.model_dump(mode="json", by_alias=True),
        )
    return BatchAcceptance(response, replayed=False)


@dataclass(frozen=True)
class BatchAcceptance:
    response: SendBatchAccepted
    replayed: bool


def _key_reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        "This Idempotency-Key was used with a different request body in the last "
        "24 hours; use a new key for a new email.",
        details=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
    )


def _new_email(
    request: SendEmailRequest,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID | None,
    now: datetime,
) -> Email:
    sender = request.sender or settings.mail_from
    return Email(
        id=uuid.uuid4(),
        sender=sender,
        to_addrs=list(request.to),
        cc_addrs=list(request.cc),
        bcc_addrs=list(request.bcc),
        reply_to=list(request.reply_to),
        recipients=sorted(
            {parse_mailbox(a).address.lower() for a in (*request.to, *request.cc, *request.bcc)}
        ),
        subject=request.subject,
        text_body=request.text,
        html_body=request.html,
        headers=dict(request.headers),
        message_id=new_message_id(settings.message_id_domain or _domain(sender)),
        request_id=request_id,
        api_key_id=api_key_id,
        status=EmailStatus.QUEUED.value,
        attempts=0,
        created_at=now,
        updated_at=now,
        # Due now: the sweeper finds it by this if its job never reaches a worker.
        next_attempt_at=now,
    )


_INSERTED_COLUMNS = (
    "id",
    "sender",
    "to_addrs",
    "cc_addrs",
    "bcc_addrs",
    "reply_to",
    "recipients",
    "subject",
    "text_body",
    "html_body",
    "headers",
    "message_id",
    "request_id",
    "batch_job_id",
    "api_key_id",
    "status",
    "attempts",
    "created_at",
    "updated_at",
    "next_attempt_at",
)


def _columns(email: Email) -> dict[str, object]:
    return {name: getattr(email, name) for name in _INSERTED_COLUMNS}


def _log_accepted(email: Email) -> None:
    log.info(
        "email.accepted",
        email_id=str(email.id),
        to=[mask_address(r) for r in email.recipients[:5]],
        recipients=len(email.recipients),
    )


def _domain(address_header: str) -> str:
    return parse_mailbox(address_header).address.rpartition("@")[2]


# -- reading -------------------------------------------------------------------------


async def get_email(session: AsyncSession, email_id: uuid.UUID) -> EmailDetail:
    email = await repository.get_email(session, email_id, with_attempts=True)
    if email is None:
        raise NotFound(f"No email with id {email_id}")
    return EmailDetail(
        **log_item(email).model_dump(),
        reply_to=email.reply_to,
        text=email.text_body,
        html=email.html_body,
        headers=email.headers,
        request_id=email.request_id,
        delivery_attempts=[
            DeliveryAttemptItem(
                number=a.attempt_number,
                started_at=a.started_at,
                finished_at=a.finished_at,
                outcome=a.outcome,
                code=a.smtp_code,
                enhanced_code=a.enhanced_code,
                message=a.message,
                duration_ms=a.duration_ms,
                refused_recipients=a.refused_recipients,
            )
            for a in email.delivery_attempts
        ],
    )


def log_item(email: Email) -> EmailLogItem:
    has_error = email.last_error_code is not None or email.last_error_message is not None
    return EmailLogItem(
        id=email.id,
        sender=email.sender,
        to=email.to_addrs,
        cc=email.cc_addrs,
        bcc=email.bcc_addrs,
        subject=email.subject,
        status=EmailStatus(email.status),
        attempts=email.attempts,
        message_id=email.message_id,
        created_at=email.created_at,
        sent_at=email.sent_at,
        failed_at=email.failed_at,
        next_attempt_at=email.next_attempt_at,
        error=EmailError(
            code=email.last_error_code,
            enhanced_code=email.last_error_enhanced,
            message=email.last_error_message,
        )
        if has_error
        else None,
    )


async def list_log(session: AsyncSession, query: LogQuery, *, now: datetime) -> EmailLogPage:
    log_filter = query.log_filter()
    after = query.position()
    page = None if after is not None else (query.page or 1)
    offset = 0 if page is None else (page - 1) * query.limit
    # One row more than asked tells whether another page follows.
    rows = await repository.list_emails(
        session, log_filter, limit=query.limit + 1, offset=offset, after=after
    )
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    total = await repository.count_emails(session, log_filter)
    last = rows[-1] if rows else None
    return EmailLogPage(
        data=[log_item(e) for e in rows],
        pagination=Pagination(
            page=page,
            limit=query.limit,
            total=total,
            total_pages=math.ceil(total / query.limit),
            has_more=has_more,
            next_cursor=encode_cursor(Position(last.created_at, last.id))
            if has_more and last is not None
            else None,
        ),
        summary=await daily_summary(session, query, now=now),
    )


async def daily_summary(session: AsyncSession, query: LogQuery, *, now: datetime) -> DailySummary:
    zone = query.zone
    today = now.astimezone(zone).date()
    start, end = day_bounds(today, zone)
    counts = await repository.count_created_between(session, start, end)
    return DailySummary(
        date=today.isoformat(),
        timezone=query.tz,
        total=counts.total,
        sent=counts.sent,
        failed=counts.failed,
        pending=counts.total - counts.sent - counts.failed,
    )


# -- delivering ----------------------------------------------------------------------


async def claim_for_delivery(
    uow: UnitOfWork, email_ids: Sequence[uuid.UUID], *, settings: Settings
) -> list[Claimed]:
    """Claim whichever of these emails are due; the others are finished or owned elsewhere."""
    return await repository.claim(uow.session, email_ids, timedelta(seconds=settings.sending_lease))


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
    """Log the attempts and move each email on, in one transaction, whatever their outcomes."""
    decisions: list[Decision] = []
    finished: list[Finished] = []
    for a in attempts:
        decision = decide(
            a.result,
            a.claimed.attempt,
            max_attempts=settings.max_attempts,
            base=settings.retry_backoff_base,
            cap=settings.retry_backoff_max,
            rng=rng,
        )
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
            )
        )
    owned = await repository.finish_attempts(uow.session, finished)
    recorded: list[Recorded] = []
    for a, decision in zip(attempts, decisions, strict=True):
        applied = a.claimed.email.id in owned
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
    if not await repository.try_sweeper_lock(uow.session, lock_key):
        return ()
    stranded = await repository.find_stranded(
        uow.session, grace=timedelta(seconds=settings.sweep_grace), limit=settings.sweep_batch_size
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
