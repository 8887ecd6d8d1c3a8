"""Bodies of the webhook routes. The URL's rules depend on settings: the service checks it."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, field_validator

from mailroom.webhooks.events import EMAIL_EVENT_TYPES
from mailroom.webhooks.schemas import CamelSchema

MAX_DESCRIPTION = 500
MAX_REPLAY_IDS = 1000
_URL = Field(
    min_length=1,
    max_length=4096,  # the 2,048 rule is the service's, with a clearer message
    description="Where events are POSTed: an absolute https URL without credentials",
    examples=["https://example.com/hooks/mailroom"],
)
_EVENTS_DESCRIPTION = "Event types to receive; every one when omitted. Known: " + ", ".join(
    EMAIL_EVENT_TYPES
)


def _known_events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("give at least one event type, or leave `events` out for all of them")
    unknown = [v for v in value if v not in EMAIL_EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EMAIL_EVENT_TYPES)}"
        )
    return list(dict.fromkeys(value))


class CreateWebhook(CamelSchema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://app.example.com/hooks/mailroom",
                    "events": ["email.sent", "email.failed"],
                    "description": "Order service",
                }
            ]
        },
    )

    url: str = _URL
    events: list[str] | None = Field(default=None, max_length=50, description=_EVENTS_DESCRIPTION)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    _events = field_validator("events")(_known_events)


class UpdateWebhook(CamelSchema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    url: str | None = Field(default=None, min_length=1, max_length=4096)
    events: list[str] | None = Field(default=None, max_length=50, description=_EVENTS_DESCRIPTION)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    enabled: bool | None = Field(
        default=None, description="false stops deliveries; true resumes them (and clears why)"
    )

    _events = field_validator("events")(_known_events)


class ReplayRequest(CamelSchema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"since": "2026-12-04T00:00:00Z", "until": "2026-12-04T12:00:00Z"}]
        },
    )

    event_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=MAX_REPLAY_IDS, description="These events (their webhook-id)"
    )
    since: datetime | None = Field(default=None, description="Events from this instant")
    until: datetime | None = Field(default=None, description="Events before this instant")
