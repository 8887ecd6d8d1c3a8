"""What the suppression routes take and return. Field names are camelCase on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from mailroom.suppressions.addresses import MAX_ADDRESS_LENGTH, normalize
from mailroom.suppressions.models import Reason

MAX_ADDRESSES = 1000


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SuppressionItem(_Camel):
    address: str = Field(description="Local part as given, domain lower-cased")
    reason: Reason
    email_id: uuid.UUID | None = Field(description="The email whose bounce or complaint added it")
    created_at: datetime
    expires_at: datetime | None = Field(description="It stops suppressing then; null: never")


class SuppressionPagination(_Camel):
    limit: int
    has_more: bool
    next_cursor: str | None


class SuppressionPage(_Camel):
    data: list[SuppressionItem]
    pagination: SuppressionPagination


class AddSuppressions(_Camel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"addresses": ["jane@example.com"], "reason": "manual"}]},
    )

    addresses: list[str] = Field(min_length=1, max_length=MAX_ADDRESSES)
    reason: Literal["manual", "unsubscribe"] = "manual"
    expires_at: datetime | None = Field(
        default=None, description="When the suppressions end (in the future); null: never"
    )

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        normalized: list[str] = []
        for i, address in enumerate(value):
            if len(address) > MAX_ADDRESS_LENGTH + 2:
                raise ValueError(f"addresses[{i}] is longer than {MAX_ADDRESS_LENGTH} characters")
            try:
                normalized.append(normalize(address))
            except ValueError as exc:
                raise ValueError(f"addresses[{i}]: {exc}") from None
        return normalized

    @field_validator("expires_at")
    @classmethod
    def _expires_at(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry its offset (e.g. 2027-01-01T00:00:00Z)")
        return value


class AddedSuppressions(_Camel):
    added: int = Field(description="Addresses newly on the list (or whose entry was renewed)")
    data: list[SuppressionItem]
