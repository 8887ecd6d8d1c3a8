"""Use cases of the email log. The API and the worker call these; they own every state change."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.addresses import parse_mailbox
from mailroom.emails import idempotency, repository
from mailroom.emails.intake import Intake
from mailroom.emails.log_query import LogQuery, day_bounds, encode_cursor
from mailroom.emails.message import new_message_id
from mailroom.emails.models import Email
from mailroom.emails.repository import (
    AttemptRecord,
    Claimed,
    Finished,
    LastError,
    LogFilter,
    Position,
)
from mailroom.emails.retry import Decision, decide
from mailroom.emails.schemas import (
    REQUEUE_BATCH,
    AttachmentInfo,
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
    RequeueRequest,
    RequeueResult,
    SendAccepted,
    SendBatchAccepted,
    SendEmailRequest,
)
from mailroom.emails.states import CANCEL, DEFER, RETRY, EmailStatus
from mailroom.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    MailroomError,
    NotFound,
    PayloadTooLarge,
    field_errors,
)
from mailroom.log_config import mask_address
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Outcome, SendResult
from mailroom.unit_of_work import Dispatch, UnitOfWork, unit_of_work

log = structlog.get_logger(__name__)

MAX_STORED_REPLY = 1000  # characters of server text kept per attempt


# -- accepting -----------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    response: SendAccepted
    replayed: bool  # an earlier response to the same Idempotency-Key


async def send_email(
    intake: Intake,
    request: SendEmailRequest,
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID,
    idempotency_key: str | None,
    sandbox: bool = False,
) -> Acceptance:
    """POST /send: accept the email, or replay the answer to an earlier identical request.

    A plain request (no Idempotency-Key, no attachments) is stored in a transaction
    shared with the requests arriving at the same time (see intake); the others get
    one of their own.
    """
    problems = _attachment_problems(request, settings)
    if problems:
        raise PayloadTooLarge(_too_large_message(problems), details=problems)
    if idempotency_key is None and not request.attachments:
        now = datetime.now(UTC)
        email = _new_email(request, settings, request_id, api_key_id, now, sandbox=sandbox)
        await intake.store(_columns(email), _first_job(email, now))
        _log_accepted(email)
        return Acceptance(_accepted(email), replayed=False)
    async with intake.transaction() as uow:
        return await _send_alone(
            uow,
            request,
            settings=settings,
            request_id=request_id,
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            sandbox=sandbox,
        )


async def _send_alone(
    uow: UnitOfWork,
    request: SendEmailRequest,
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID,
    idempotency_key: str | None,
    sandbox: bool,
) -> Acceptance:
    if idempotency_key is not None:
        # Sandbox or not is part of what was asked: a real send after a sandbox try
        # with the same key is a different request, not a replay.
        fingerprint = idempotency.request_fingerprint(
            {**request.model_dump(mode="json", by_alias=True), "sandbox": sandbox}
        )
        earlier = await idempotency.reserve(
            uow.session, api_key_id, idempotency_key, fingerprint, now=datetime.now(UTC)
        )
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise _key_reused()
            return Acceptance(SendAccepted.model_validate(earlier.response), replayed=True)
    email = await accept_email(
        uow,
        request,
        settings=settings,
        request_id=request_id,
        api_key_id=api_key_id,
        sandbox=sandbox,
    )
    response = _accepted(email)
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
    sandbox: bool = False,
) -> Email:
    """Store a new email (``queued``, or ``scheduled`` for later); dispatch it after the commit."""
    now = datetime.now(UTC)
    email = _new_email(request, settings, request_id, api_key_id, now, sandbox=sandbox)
    await repository.add_emails(uow.session, [_columns(email)])
    await repository.add_attachments(uow.session, _attachment_rows(email, request))
    uow.dispatch_after_commit(_first_job(email, now))
    _log_accepted(email)
    return email


def _first_job(email: Email, now: datetime) -> DeliveryJob:
    # A scheduled email's job waits in Redis until it is due; if Redis loses it, the
    # sweeper finds the email overdue (next_attempt_at is its send_at).
    delay = max(0.0, (email.send_at - now).total_seconds()) if email.send_at else 0.0
    return DeliveryJob(email.id, attempt=1, request_id=email.request_id, delay=delay)


async def send_batch(
    uow: UnitOfWork,
    items: Sequence[object],
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID,
    idempotency_key: str | None,
    sandbox: bool = False,
) -> BatchAcceptance:
    """POST /send/batch: validate each email on its own; store the valid ones in one go."""
    now = datetime.now(UTC)
    results: list[BatchItemResult] = []
    emails: list[Email] = []
    # What each email means (as /send fingerprints it), so "to": "x" and "to": ["x"]
    # make the same request; an invalid item counts as written.
    meanings: list[object] = []
    attachment_rows: list[dict[str, object]] = []
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
        problems = _attachment_problems(request, settings, prefix=f"emails[{index}].")
        if problems:
            meanings.append(item)
            results.append(
                BatchItemResult(
                    index=index,
                    error=BatchItemError(
                        code=PayloadTooLarge.code,
                        message=_too_large_message(problems),
                        details=[FieldError.model_validate(d) for d in problems],
                    ),
                )
            )
            continue
        if idempotency_key is not None:
            meanings.append(request.model_dump(mode="json", by_alias=True))
        email = _new_email(request, settings, request_id, api_key_id, now, sandbox=sandbox)
        emails.append(email)
        attachment_rows += _attachment_rows(email, request)
        results.append(
            BatchItemResult(
                index=index,
                id=email.id,
                status=EmailStatus(email.status),
                message_id=email.message_id,
                created_at=now,
            )
        )
    if idempotency_key is not None:
        fingerprint = idempotency.request_fingerprint({"emails": meanings, "sandbox": sandbox})
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
    due = [e for e in emails if e.send_at is None]
    for email in emails:
        if email.send_at is not None:
            uow.dispatch_after_commit(_first_job(email, now))
    for start in range(0, len(due), size):
        chunk = due[start : start + size]
        job = DeliveryBatch(tuple(e.id for e in chunk), request_id=request_id)
        for email in chunk:
            email.batch_job_id = job.job_id
        uow.dispatch_after_commit(job)
    await repository.add_emails(uow.session, [_columns(e) for e in emails])
    await repository.add_attachments(uow.session, attachment_rows)
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


def _accepted(email: Email) -> SendAccepted:
    return SendAccepted(
        id=email.id,
        status=EmailStatus(email.status),
        message_id=email.message_id,
        created_at=email.created_at,
    )


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
    *,
    sandbox: bool = False,
) -> Email:
    sender = request.sender or settings.mail_from
    scheduled = request.send_at is not None
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
        status=(EmailStatus.SCHEDULED if scheduled else EmailStatus.QUEUED).value,
        attempts=0,
        attempts_before_retry=0,
        sandbox=sandbox,
        attachment_count=len(request.attachments),
        send_at=request.send_at,
        created_at=now,
        updated_at=now,
        # When it is due: the sweeper finds it by this if its job never reaches a worker.
        next_attempt_at=request.send_at or now,
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
    "attempts_before_retry",
    "sandbox",
    "attachment_count",
    "send_at",
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
        attachments=email.attachment_count,
        scheduled=email.send_at is not None,
        sandbox=email.sandbox,
    )


def _attachment_rows(email: Email, request: SendEmailRequest) -> list[dict[str, object]]:
    return [
        {
            "email_id": email.id,
            "position": position,
            "filename": a.filename,
            "content_type": a.content_type,
            "content_id": a.content_id,
            "size": len(a.content),
            "content": a.content,
        }
        for position, a in enumerate(request.attachments)
    ]


def _attachment_problems(
    request: SendEmailRequest, settings: Settings, prefix: str = ""
) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    one, every = settings.max_attachment_bytes, settings.max_attachments_bytes
    for i, a in enumerate(request.attachments):
        if len(a.content) > one:
            problems.append(
                {
                    "field": f"{prefix}attachments[{i}].content",
                    "message": f"{a.filename!r} is {_size(len(a.content))} after decoding; "
                    f"one file may be {_size(one)} (MAX_ATTACHMENT_BYTES)",
                }
            )
    total = sum(len(a.content) for a in request.attachments)
    if total > every:
        problems.append(
            {
                "field": f"{prefix}attachments",
                "message": f"the files add up to {_size(total)} after decoding; an email may "
                f"carry {_size(every)} (MAX_ATTACHMENTS_BYTES)",
            }
        )
    return problems


def _too_large_message(problems: list[dict[str, str]]) -> str:
    first = problems[0]
    return f"Attachments too large. {first['field']}: {first['message']}"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def _domain(address_header: str) -> str:
    return parse_mailbox(address_header).address.rpartition("@")[2]


# -- reading -------------------------------------------------------------------------


async def get_email(session: AsyncSession, email_id: uuid.UUID) -> EmailDetail:
    email = await repository.get_email(session, email_id, with_attempts=True)
    if email is None:
        raise NotFound(f"No email with id {email_id}")
    files = await repository.attachment_info(session, email_id) if email.attachment_count else []
    return EmailDetail(
        **log_item(email).model_dump(),
        reply_to=email.reply_to,
        text=email.text_body,
        html=email.html_body,
        headers=email.headers,
        request_id=email.request_id,
        attachments=[
            AttachmentInfo(
                filename=f.filename,
                content_type=f.content_type,
                content_id=f.content_id,
                size=f.size,
            )
            for f in files
        ],
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
        cancelled_at=email.cancelled_at,
        send_at=email.send_at,
        next_attempt_at=email.next_attempt_at,
        sandbox=email.sandbox,
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
        cancelled=counts.cancelled,
        pending=counts.total - counts.sent - counts.failed - counts.cancelled,
    )


# -- operating -----------------------------------------------------------------------


async def cancel_email(uow: UnitOfWork, email_id: uuid.UUID) -> EmailLogItem:
    """POST /emails/{id}/cancel: a scheduled, queued or retrying email is never sent."""
    email = await repository.cancel(uow.session, email_id)
    if email is None:
        raise await _cannot(uow.session, email_id, "cancelled", CANCEL.sources)
    log.info("email.cancelled", email_id=str(email_id))
    return log_item(email)


async def retry_email(uow: UnitOfWork, email_id: uuid.UUID) -> EmailLogItem:
    """POST /emails/{id}/retry: a failed email goes back to the queue, its history kept."""
    email = await repository.retry(uow.session, email_id)
    if email is None:
        raise await _cannot(uow.session, email_id, "retried", RETRY.sources)
    uow.dispatch_after_commit(
        DeliveryJob(email.id, attempt=email.attempts + 1, request_id=email.request_id)
    )
    log.info("email.retried", email_id=str(email_id), attempts_so_far=email.attempts)
    return log_item(email)


async def _cannot(
    session: AsyncSession, email_id: uuid.UUID, verb: str, sources: frozenset[EmailStatus]
) -> MailroomError:
    current = await repository.get_email(session, email_id)
    if current is None:
        return NotFound(f"No email with id {email_id}")
    allowed = ", ".join(sorted(s.value for s in sources))
    return Conflict(
        f"This email is {current.status}; only {allowed} emails can be {verb}.",
        details={"status": current.status},
    )


async def requeue_failed(
    sessions: async_sessionmaker[AsyncSession], dispatch: Dispatch, request: RequeueRequest
) -> RequeueResult:
    """POST /emails/requeue: retry the failed emails the filters select, a batch at a time.

    Each batch is its own short transaction, and its jobs are dispatched once it has
    committed, so a large requeue never holds many rows locked, and an interrupted one
    keeps what it did.
    """
    log_filter = LogFilter(
        statuses=(EmailStatus.FAILED,),
        recipient=request.to,
        since=request.since,
        until=request.until,
        error_class=request.error_class,
    )
    async with sessions() as session:
        matched = await repository.count_emails(session, log_filter)
    if request.dry_run:
        return RequeueResult(dry_run=True, matched=matched, requeued=0, has_more=False)
    requeued = 0
    while requeued < request.limit:
        async with unit_of_work(sessions, dispatch) as uow:
            batch = await repository.requeue_failed(
                uow.session, log_filter, limit=min(REQUEUE_BATCH, request.limit - requeued)
            )
            for r in batch:
                uow.dispatch_after_commit(
                    DeliveryJob(r.email_id, attempt=r.next_attempt, request_id=r.request_id)
                )
        requeued += len(batch)
        if not batch:
            break
    log.info("email.requeued", emails=requeued, matched=matched)
    return RequeueResult(
        dry_run=False, matched=matched, requeued=requeued, has_more=matched > requeued
    )


# -- delivering ----------------------------------------------------------------------


async def claim_for_delivery(
    uow: UnitOfWork, email_ids: Sequence[uuid.UUID], *, settings: Settings
) -> list[Claimed]:
    """Claim whichever of these emails are due; the others are finished or owned elsewhere."""
    claimed = await repository.claim(
        uow.session, email_ids, timedelta(seconds=settings.sending_lease)
    )
    with_files = [c.email.id for c in claimed if c.email.attachment_count]
    if not with_files:
        return claimed
    files = await repository.load_attachments(uow.session, with_files)
    return [replace(c, attachments=files.get(c.email.id, ())) for c in claimed]


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
            # Counted from the last manual retry: each retry gets MAX_ATTEMPTS afresh.
            a.claimed.attempt - a.claimed.email.attempts_before_retry,
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
