"""What a newly accepted email becomes before it is stored, shared by POST /send's
group commit (``intake``) and the accepting use cases.

Its ``Email`` (status, recipients, Message-ID, when it is due), the columns inserted
for it, its attachment rows and the checks on their sizes, and the jobs that first
dispatch it: ``first_jobs`` is the one place that splits emails into batch jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from mailroom.addresses import parse_mailbox
from mailroom.emails.message import new_message_id
from mailroom.emails.models import Email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.emails.states import EmailStatus
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob, Job
from mailroom.settings import Settings

# A new email's inserted columns, and the job of its first attempt.
Stored = tuple[dict[str, object], DeliveryJob]


def new_email(
    request: SendEmailRequest,
    settings: Settings,
    request_id: str | None,
    api_key_id: uuid.UUID | None,
    now: datetime,
    *,
    project_id: uuid.UUID,
    sandbox: bool = False,
    suppressed: Sequence[str] = (),
) -> Email:
    """``suppressed``: its recipients on the suppression list (normalized); if that is every
    recipient, the email is stored ``suppressed`` and never dispatched."""
    sender = request.sender or settings.mail_from
    scheduled = request.send_at is not None
    recipients = sorted(
        {parse_mailbox(a).address.lower() for a in (*request.to, *request.cc, *request.bcc)}
    )
    every_one = bool(suppressed) and len({s.lower() for s in suppressed}) >= len(recipients)
    status = EmailStatus.SCHEDULED if scheduled else EmailStatus.QUEUED
    return Email(
        id=uuid.uuid4(),
        sender=sender,
        to_addrs=list(request.to),
        cc_addrs=list(request.cc),
        bcc_addrs=list(request.bcc),
        reply_to=list(request.reply_to),
        recipients=recipients,
        subject=request.subject,
        text_body=request.text,
        html_body=request.html,
        headers=dict(request.headers),
        message_id=new_message_id(settings.message_id_domain or _domain(sender)),
        request_id=request_id,
        api_key_id=api_key_id,
        project_id=project_id,
        status=(EmailStatus.SUPPRESSED if every_one else status).value,
        suppressed_recipients=list(suppressed),
        attempts=0,
        attempts_before_retry=0,
        sandbox=sandbox,
        attachment_count=len(request.attachments),
        send_at=request.send_at,
        created_at=now,
        updated_at=now,
        # When it is due: the sweeper finds it by this if its job never reaches a worker.
        next_attempt_at=None if every_one else request.send_at or now,
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
    "project_id",
    "status",
    "attempts",
    "attempts_before_retry",
    "sandbox",
    "attachment_count",
    "send_at",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "suppressed_recipients",
)


def columns(email: Email) -> dict[str, object]:
    return {name: getattr(email, name) for name in _INSERTED_COLUMNS}


def attachment_rows(email: Email, request: SendEmailRequest) -> list[dict[str, object]]:
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


def attachment_problems(
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


def too_large_message(problems: list[dict[str, str]]) -> str:
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


def first_job(email: Email, now: datetime) -> DeliveryJob:
    # A scheduled email's job waits in Redis until it is due; if Redis loses it, the
    # sweeper finds the email overdue (next_attempt_at is its send_at).
    delay = max(0.0, (email.send_at - now).total_seconds()) if email.send_at else 0.0
    return DeliveryJob(email.id, attempt=1, request_id=email.request_id, delay=delay)


def first_jobs(
    stored: Sequence[Stored], *, batch_job_size: int, request_id: str | None = None
) -> list[Job]:
    """The jobs that first dispatch these emails, once they are committed.

    A scheduled email keeps its delayed job. The others share batch jobs of up to
    ``batch_job_size`` emails: a few jobs of many emails each, so the queue's cost per
    email all but vanishes while the jobs still spread over every worker process. Each
    batched row gets its job's id in ``batch_job_id``: the sweeper asks Redis for that
    job before it re-dispatches the email (see Dispatcher.absent).
    """
    # Every recipient suppressed: stored only, never dispatched.
    stored = [
        (row, job) for row, job in stored if row.get("status") != EmailStatus.SUPPRESSED.value
    ]
    jobs: list[Job] = [job for _, job in stored if job.delay > 0]
    due = [row for row, job in stored if job.delay <= 0]
    ids = [job.email_id for _, job in stored if job.delay <= 0]
    for start in range(0, len(due), batch_job_size):
        batch = DeliveryBatch(tuple(ids[start : start + batch_job_size]), request_id=request_id)
        for row in due[start : start + batch_job_size]:
            row["batch_job_id"] = batch.job_id
        jobs.append(batch)
    return jobs


def mark_suppressed(row: dict[str, object], suppressed: Sequence[str]) -> None:
    """Leave these (normalized) recipients out of a new email's row; with none left, it is
    stored ``suppressed`` and never dispatched (see ``first_jobs``)."""
    if not suppressed:
        return
    row["suppressed_recipients"] = list(suppressed)
    recipients = row["recipients"]
    assert isinstance(recipients, list)
    if len({a.lower() for a in suppressed}) >= len(recipients):
        row["status"] = EmailStatus.SUPPRESSED.value
        row["next_attempt_at"] = None
