"""SQL of the deliveries log: an endpoint's attempts, newest first, by keyset cursor."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.webhooks.models import WebhookAttempt

MAX_CURSOR_LENGTH = 200


@dataclass(frozen=True)
class Position:
    created_at: datetime
    id: int


def encode_cursor(position: Position) -> str:
    raw = json.dumps({"t": position.created_at.isoformat(), "i": position.id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """Raises ValueError for anything that is not a cursor this service produced."""
    invalid = ValueError("is not a valid cursor: pass back a nextCursor unchanged")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        found = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(found, dict) or set(found) != {"t", "i"} or type(found["i"]) is not int:
            raise invalid
        moment = datetime.fromisoformat(found["t"])
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise invalid from None
    if moment.tzinfo is None:
        raise invalid
    return Position(moment, found["i"])


async def attempts(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    after: Position | None,
    status: str | None,
    event_type: str | None,
    limit: int,
) -> Sequence[WebhookAttempt]:
    """Up to ``limit`` attempts, newest first, after the cursor's position."""
    stmt = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(WebhookAttempt.status == status)
    if event_type is not None:
        stmt = stmt.where(WebhookAttempt.event_type == event_type)
    if after is not None:
        stmt = stmt.where(
            or_(
                WebhookAttempt.created_at < after.created_at,
                and_(WebhookAttempt.created_at == after.created_at, WebhookAttempt.id < after.id),
            )
        )
    stmt = stmt.order_by(WebhookAttempt.created_at.desc(), WebhookAttempt.id.desc()).limit(limit)
    return (await session.scalars(stmt)).all()
