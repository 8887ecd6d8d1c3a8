"""The jobs Mailroom queues: "make delivery attempt N of email X", and its batch form.

A batch job carries the first attempt of many emails accepted together (POST
/send/batch), so the queue costs one job per batch rather than one per email.
Retries always go out as single jobs, each with its own delay.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

JOB_NAME = "deliver"
BATCH_JOB_NAME = "deliver-batch"


@dataclass(frozen=True)
class DeliveryJob:
    email_id: uuid.UUID
    attempt: int  # the attempt this job makes; it also names the job
    request_id: str | None = None
    delay: float = 0.0  # seconds
    # The id of a job that may already carry this attempt (the batch an email came in);
    # the sweeper asks Redis for that one before it dispatches this one.
    queued_as: str | None = None
    # Set when a provider's limit handed the email back before the attempt: the same
    # attempt is queued again while its first job is still running, so it needs an id
    # of its own (one per hand-back).
    paced_until_ms: int | None = None

    @property
    def job_id(self) -> str:
        # Derived from the email, so dispatching the same attempt twice (say, the
        # sweeper and the API) queues it once. BullMQ ids must not contain ':'.
        if self.paced_until_ms is not None:
            return f"{self.email_id}-{self.attempt}-p{self.paced_until_ms}"
        return f"{self.email_id}-{self.attempt}"

    def data(self) -> dict[str, Any]:
        return {
            "emailId": str(self.email_id),
            "attempt": self.attempt,
            "requestId": self.request_id,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DeliveryJob:
        return cls(
            email_id=uuid.UUID(str(data["emailId"])),
            attempt=int(data.get("attempt", 1)),
            request_id=data.get("requestId"),
        )


@dataclass(frozen=True)
class DeliveryBatch:
    email_ids: tuple[uuid.UUID, ...]  # each email's first attempt
    request_id: str | None = None
    delay: float = 0.0

    @property
    def job_id(self) -> str:
        # The first email names it: a re-dispatch of the same batch queues it once.
        return f"batch-{self.email_ids[0]}-{len(self.email_ids)}"

    def data(self) -> dict[str, Any]:
        return {"emailIds": [str(i) for i in self.email_ids], "requestId": self.request_id}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DeliveryBatch:
        return cls(
            email_ids=tuple(uuid.UUID(str(i)) for i in data["emailIds"]),
            request_id=data.get("requestId"),
        )


Job = DeliveryJob | DeliveryBatch


def job_name(job: Job) -> str:
    return BATCH_JOB_NAME if isinstance(job, DeliveryBatch) else JOB_NAME
