"""Operating on emails already accepted: cancel one, retry one, requeue failed ones.

Each is a guarded transition (see states): an email whose status does not allow it
is a 409 that names its status, and a retried email's job is dispatched after the
commit, with its history kept and a fresh budget of attempts. Each acts only on emails
the caller's ``ProjectAccess`` reaches: another project's email is a 404, as if it did
not exist, and a requeue selects only among the caller's project's emails (or the one
an admin names).
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import log_repository, transitions_repository
from mailroom.emails.log import log_item
from mailroom.emails.log_repository import LogFilter
from mailroom.emails.schemas.requests import RequeueRequest
from mailroom.emails.schemas.responses import EmailLogItem, RequeueResult
from mailroom.emails.states import CANCEL, RETRY, EmailStatus
from mailroom.errors import Conflict, MailroomError, NotFound
from mailroom.projects.access import ProjectAccess
from mailroom.queue.jobs import DeliveryJob
from mailroom.unit_of_work import Dispatch, UnitOfWork, unit_of_work

log = structlog.get_logger(__name__)

REQUEUE_BATCH = 500  # emails per transaction of a requeue


async def cancel_email(
    uow: UnitOfWork, email_id: uuid.UUID, *, access: ProjectAccess, project: str | None = None
) -> EmailLogItem:
    """POST /emails/{id}/cancel: a scheduled, queued or retrying email is never sent.

    ``project``: only if it is this project's (as the caller's access allows).
    """
    project_id = await access.project_id(uow.session, project)
    found = await transitions_repository.cancel(uow.session, email_id, project_id=project_id)
    if found is None:
        raise await _cannot(uow.session, email_id, project_id, "cancelled", CANCEL.sources)
    log.info("email.cancelled", email_id=str(email_id))
    return log_item(found)


async def retry_email(
    uow: UnitOfWork, email_id: uuid.UUID, *, access: ProjectAccess, project: str | None = None
) -> EmailLogItem:
    """POST /emails/{id}/retry: a failed email goes back to the queue, its history kept."""
    project_id = await access.project_id(uow.session, project)
    found = await transitions_repository.retry(uow.session, email_id, project_id=project_id)
    if found is None:
        raise await _cannot(uow.session, email_id, project_id, "retried", RETRY.sources)
    email = found.email
    uow.dispatch_after_commit(
        DeliveryJob(email.id, attempt=email.attempts + 1, request_id=email.request_id)
    )
    log.info("email.retried", email_id=str(email_id), attempts_so_far=email.attempts)
    return log_item(found)


async def _cannot(
    session: AsyncSession,
    email_id: uuid.UUID,
    project_id: uuid.UUID | None,
    verb: str,
    sources: frozenset[EmailStatus],
) -> MailroomError:
    current = await log_repository.get_email(session, email_id, project_id=project_id)
    if current is None:
        return NotFound(f"No email with id {email_id}")
    status = current.email.status
    allowed = ", ".join(sorted(s.value for s in sources))
    return Conflict(
        f"This email is {status}; only {allowed} emails can be {verb}.",
        details={"status": status},
    )


async def requeue_failed(
    sessions: async_sessionmaker[AsyncSession],
    dispatch: Dispatch,
    request: RequeueRequest,
    *,
    access: ProjectAccess,
    project: str | None = None,
) -> RequeueResult:
    """POST /emails/requeue: retry the failed emails the filters select, a batch at a time.

    Only the caller's project's emails (every project's for an admin or an operator,
    unless ``project`` names one). Each batch is its own short transaction, and its jobs
    are dispatched once it has committed, so a large requeue never holds many rows
    locked, and an interrupted one keeps what it did.
    """
    async with sessions() as session:
        log_filter = LogFilter(
            project_id=await access.project_id(session, project),
            statuses=(EmailStatus.FAILED,),
            recipient=request.to,
            since=request.since,
            until=request.until,
            error_class=request.error_class,
        )
        matched = await log_repository.count_emails(session, log_filter)
    if request.dry_run:
        return RequeueResult(dry_run=True, matched=matched, requeued=0, has_more=False)
    requeued = 0
    while requeued < request.limit:
        async with unit_of_work(sessions, dispatch) as uow:
            batch = await transitions_repository.requeue_failed(
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
