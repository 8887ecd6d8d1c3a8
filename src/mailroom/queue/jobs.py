"""The one kind of job Mailroom queues: "make delivery attempt N of email X"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

JOB_NAME = "deliver"


@dataclass(frozen=True)
class DeliveryJob:
    email_id: uuid.UUID
    attempt: int  # the attempt this job makes; it also names the job
    request_id: str | None = None
    delay: float = 0.0  # seconds

    @property
    def job_id(self) -> str:
        # Derived from the email, so dispatching the same attempt twice (say, the
        # sweeper and the API) queues it once. BullMQ ids must not contain ':'.
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
