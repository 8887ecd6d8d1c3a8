"""What a new email becomes: its row, its size checks, and the jobs that first dispatch it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mailroom.emails import new_emails
from mailroom.emails.new_emails import Stored, first_jobs
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings


def _base64(size: int) -> str:
    return base64.b64encode(b"a" * size).decode()


def _stored(*delays: float) -> list[Stored]:
    return [
        ({"id": i}, DeliveryJob(i, attempt=1, delay=delay))
        for i, delay in ((uuid.uuid4(), d) for d in delays)
    ]


def test_due_emails_share_batch_jobs_of_the_given_size_in_order() -> None:
    stored = _stored(*[0.0] * 7)
    jobs = first_jobs(stored, batch_job_size=3, request_id="req-7")
    assert all(isinstance(j, DeliveryBatch) for j in jobs)
    batches = [j for j in jobs if isinstance(j, DeliveryBatch)]
    assert [b.email_ids for b in batches] == [
        tuple(job.email_id for _, job in stored[start : start + 3]) for start in (0, 3, 6)
    ]
    assert {b.request_id for b in batches} == {"req-7"}
    # Each row names the job that carries it: the sweeper asks Redis for that one.
    assert [row["batch_job_id"] for row, _ in stored] == [
        b.job_id for b in batches for _ in b.email_ids
    ]


def test_a_scheduled_email_keeps_its_delayed_job_and_no_batch_id() -> None:
    stored = _stored(0.0, 60.0, 0.0)
    later_row, later_job = stored[1]
    jobs = first_jobs(stored, batch_job_size=50)
    assert jobs[0] is later_job
    [batch] = jobs[1:]
    assert isinstance(batch, DeliveryBatch)
    assert batch.email_ids == (stored[0][1].email_id, stored[2][1].email_id)
    assert batch.request_id is None
    assert "batch_job_id" not in later_row


def test_nothing_due_makes_no_batch() -> None:
    assert first_jobs([], batch_job_size=50) == []
    stored = _stored(5.0)
    assert first_jobs(stored, batch_job_size=50) == [stored[0][1]]


def test_a_new_email_is_due_now_or_at_its_send_at(settings: Settings) -> None:
    now = datetime.now(UTC)
    request = SendEmailRequest.model_validate(
        {"to": ["Jane <Jane@Example.com>"], "bcc": "x@example.org", "subject": "s", "text": "t"}
    )
    email = new_emails.new_email(
        request, settings, "req-1", None, now, project_id=DEFAULT_PROJECT_ID
    )
    assert (email.status, email.next_attempt_at, email.send_at) == ("queued", now, None)
    assert email.recipients == ["jane@example.com", "x@example.org"]
    assert new_emails.first_job(email, now) == DeliveryJob(email.id, 1, "req-1", delay=0.0)
    assert new_emails.columns(email)["batch_job_id"] is None

    send_at = now + timedelta(minutes=5)
    later = new_emails.new_email(
        request.model_copy(update={"send_at": send_at}),
        settings,
        None,
        None,
        now,
        project_id=DEFAULT_PROJECT_ID,
    )
    assert (later.status, later.next_attempt_at) == ("scheduled", send_at)
    assert new_emails.first_job(later, now).delay == 300.0


def test_attachment_sizes_are_checked_one_by_one_and_together(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_attachment_bytes=2048, max_attachments_bytes=3072)
    request = SendEmailRequest.model_validate(
        {
            "to": "jane@example.com",
            "subject": "s",
            "text": "t",
            "attachments": [
                {"filename": "a.txt", "content": _base64(1800)},
                {"filename": "b.txt", "content": _base64(2100)},
            ],
        }
    )
    problems = new_emails.attachment_problems(request, settings, prefix="emails[2].")
    assert [p["field"] for p in problems] == [
        "emails[2].attachments[1].content",
        "emails[2].attachments",
    ]
    assert "2.1 KiB" in problems[0]["message"] and "MAX_ATTACHMENT_BYTES" in problems[0]["message"]
    assert "3.8 KiB" in problems[1]["message"] and "MAX_ATTACHMENTS_BYTES" in problems[1]["message"]
    assert new_emails.too_large_message(problems).startswith(
        "Attachments too large. emails[2].attachments[1].content: "
    )
