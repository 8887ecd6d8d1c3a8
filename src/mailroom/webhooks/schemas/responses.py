"""What the webhook routes return."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from mailroom.webhooks.schemas import CamelSchema


class Webhook(CamelSchema):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Mailroom disabled it (410 Gone, or failing too long); null otherwise"
    )
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="whsec_…: shown here and on rotation only")


class WebhookList(CamelSchema):
    data: list[Webhook]


class RotatedSecret(CamelSchema):
    secret: str


class WebhookAttemptItem(CamelSchema):
    event_id: uuid.UUID = Field(description="The event's webhook-id")
    event_type: str
    attempt: int
    status: Literal["succeeded", "failed", "pending"] = Field(
        description="pending: it failed and another attempt comes at nextAttemptAt"
    )
    response_code: int | None
    duration_ms: int
    response_body: str | None = Field(description="The first 4 KB of the answer")
    error: str | None
    created_at: datetime
    next_attempt_at: datetime | None


class WebhookAttemptPage(CamelSchema):
    data: list[WebhookAttemptItem]
    has_more: bool
    next_cursor: str | None


class Replayed(CamelSchema):
    replayed: int


class WebhookDeleted(CamelSchema):
    id: uuid.UUID
    deleted: bool = True
