"""What the feedback routes return. Field names are camelCase on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FeedbackReceived(_Camel):
    received: int = Field(description="Events in the request that say something about delivery")
    matched: int = Field(description="Applied to the email they name")
    unmatched: int = Field(description="Kept (GET /feedback/unmatched): no email matched")
    duplicates: int = Field(description="Received before (the provider sent them again)")
    emails: list[uuid.UUID] = Field(description="The emails the matched events applied to")


class UnmatchedItem(_Camel):
    id: int
    provider: str
    kind: str
    recipient: str | None
    message_id: str | None = Field(description="The Message-ID the report named, if any")
    reason: str | None = Field(description="Why it matched no email, or could not be read")
    received_at: datetime
    raw: str | None = Field(description="The report as received (first 64 KiB)")


class UnmatchedPage(_Camel):
    data: list[UnmatchedItem]
    has_more: bool
    next_cursor: str | None
