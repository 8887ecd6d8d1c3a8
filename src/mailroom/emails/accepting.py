"""Accepting emails: POST /send and POST /send/batch.

An accepted email is committed before the answer, and its job handed to Redis after
the commit (or left to the sweeper): from then on it is delivered or its failure is
recorded. An Idempotency-Key replays the first answer to the same request.

Each email belongs to the project of the key that sent it (``project_id``), for good.
Idempotency keys stay scoped to the API key, which belongs to one project for good: a
replay can only ever return an email of the caller's own project.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from pydantic import ValidationError

from mailroom.emails import idempotency, new_emails, suppression_check, transitions_repository
from mailroom.emails.intake import Intake
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.emails.schemas.responses import (
    BatchItemError,
    BatchItemResult,
    FieldError,
    SendAccepted,
    SendBatchAccepted,
)
from mailroom.emails.states import EmailStatus
from mailroom.errors import (
    Forbidden,
    IdempotencyKeyReused,
    InvalidRequest,
    PayloadTooLarge,
    field_errors,
    first_details,
)
from mailroom.log_config import mask_address
from mailroom.settings import Settings
from mailroom.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

_YIELD_EVERY = 25  # batch items validated between turns of the event loop


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
    project_id: uuid.UUID,
    idempotency_key: str | None,
    sandbox: bool = False,
) -> Acceptance:
    """POST /send: accept the email, or replay the answer to an earlier identical request.

    A plain request (no Idempotency-Key, no attachments) is stored in a transaction
    shared with the requests arriving at the same time (see intake); the others get
    one of their own.
    """
    problems = new_emails.attachment_problems(request, settings)
    if problems:
        raise PayloadTooLarge(new_emails.too_large_message(problems), details=problems)
    if idempotency_key is None and not request.attachments:
        now = datetime.now(UTC)
        email = new_emails.new_email(
            request, settings, request_id, api_key_id, now, project_id=project_id, sandbox=sandbox
        )
        row = new_emails.columns(email)
        check = suppression_check.check_for(request, settings, project_id)
        left_out = await intake.store(row, new_emails.first_job(email, now), check)
        # The row as stored: its status and suppressed recipients come from the check.
        email.status = str(row["status"])
        email.suppressed_recipients = left_out
        _log_accepted(email)
        return Acceptance(_accepted(email), replayed=False)
    async with intake.transaction() as uow:
        return await _send_alone(
            uow,
            request,
            settings=settings,
            request_id=request_id,
            api_key_id=api_key_id,
            project_id=project_id,
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
    project_id: uuid.UUID,
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
        project_id=project_id,
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
    project_id: uuid.UUID,
    api_key_id: uuid.UUID | None = None,
    sandbox: bool = False,
) -> Email:
    """Store a new email (``queued``, or ``scheduled`` for later); dispatch it after the commit.

    Its recipients on the suppression list are left out of its envelope; if that is all
    of them, it is stored ``suppressed`` and never dispatched.
    """
    now = datetime.now(UTC)
    found = await suppression_check.suppressed(uow.session, settings, project_id, [request], now)
    email = new_emails.new_email(
        request,
        settings,
        request_id,
        api_key_id,
        now,
        project_id=project_id,
        sandbox=sandbox,
        suppressed=suppression_check.suppressed_of(request, found),
    )
    await transitions_repository.add_emails(uow.session, [new_emails.columns(email)])
    await transitions_repository.add_attachments(
        uow.session, new_emails.attachment_rows(email, request)
    )
    if email.status != EmailStatus.SUPPRESSED.value:
        uow.dispatch_after_commit(new_emails.first_job(email, now))
    _log_accepted(email)
    return email


async def send_batch(
    uow: UnitOfWork,
    items: Sequence[object],
    *,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID,
    project_id: uuid.UUID,
    idempotency_key: str | None,
    sandbox: bool = False,
    may_ignore_suppressions: bool = False,
) -> BatchAcceptance:
    """POST /send/batch: validate each email on its own; store the valid ones in one go.

    The suppression list is read once for every recipient of the batch.
    """
    now = datetime.now(UTC)
    results: list[BatchItemResult] = []
    valid: list[tuple[int, SendEmailRequest]] = []
    emails: list[Email] = []
    # What each email means (as /send fingerprints it), so "to": "x" and "to": ["x"]
    # make the same request; an invalid item counts as written.
    meanings: list[object] = []
    attachment_rows: list[dict[str, object]] = []
    for index, item in enumerate(items):
        if index and index % _YIELD_EVERY == 0:
            # 500 emails of 50 recipients take about a second to validate: let other
            # requests (and /health) have the event loop in between.
            await asyncio.sleep(0)
        try:
            request = SendEmailRequest.model_validate(item)
        except ValidationError as exc:
            meanings.append(item)
            details, total = first_details(field_errors(exc.errors(), prefix=f"emails[{index}]"))
            results.append(
                BatchItemResult(
                    index=index,
                    error=BatchItemError(
                        code=InvalidRequest.code,
                        message=f"Invalid email. {details[0]['field']}: {details[0]['message']}",
                        details=[FieldError.model_validate(d) for d in details],
                        details_total=total,
                    ),
                )
            )
            continue
        problems = new_emails.attachment_problems(request, settings, prefix=f"emails[{index}].")
        if problems:
            meanings.append(item)
            results.append(
                BatchItemResult(
                    index=index,
                    error=BatchItemError(
                        code=PayloadTooLarge.code,
                        message=new_emails.too_large_message(problems),
                        details=[FieldError.model_validate(d) for d in problems],
                    ),
                )
            )
            continue
        if request.ignore_suppressions and not may_ignore_suppressions:
            meanings.append(item)
            results.append(
                BatchItemResult(
                    index=index,
                    error=BatchItemError(
                        code=Forbidden.code,
                        message=suppression_check.IGNORE_FORBIDDEN,
                        details=[
                            FieldError(
                                field=f"emails[{index}].ignoreSuppressions",
                                message="needs the suppressions:write scope",
                            )
                        ],
                    ),
                )
            )
            continue
        if idempotency_key is not None:
            meanings.append(request.model_dump(mode="json", by_alias=True))
        valid.append((index, request))
        results.append(BatchItemResult(index=index))  # filled in below
    found = await suppression_check.suppressed(
        uow.session, settings, project_id, [r for _, r in valid], now
    )
    for index, request in valid:
        email = new_emails.new_email(
            request,
            settings,
            request_id,
            api_key_id,
            now,
            project_id=project_id,
            sandbox=sandbox,
            suppressed=suppression_check.suppressed_of(request, found),
        )
        emails.append(email)
        attachment_rows += new_emails.attachment_rows(email, request)
        results[index] = BatchItemResult(
            index=index,
            id=email.id,
            status=EmailStatus(email.status),
            message_id=email.message_id,
            created_at=now,
            # Listed only when some are (the batch answer leaves out empty fields).
            suppressed=list(email.suppressed_recipients) or None,
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
    rows = [new_emails.columns(e) for e in emails]
    stored = list(zip(rows, (new_emails.first_job(e, now) for e in emails), strict=True))
    for job in new_emails.first_jobs(
        stored, batch_job_size=settings.batch_job_size, request_id=request_id
    ):
        uow.dispatch_after_commit(job)
    await transitions_repository.add_emails(uow.session, rows)
    await transitions_repository.add_attachments(uow.session, attachment_rows)
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
        suppressed=list(email.suppressed_recipients),
    )


def _key_reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        "This Idempotency-Key was used with a different request body in the last "
        "24 hours; use a new key for a new email.",
        details=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
    )


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
