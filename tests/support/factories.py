"""Rows for tests that need an email in a given state at a given time."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.message import new_message_id
from mailroom.emails.models import Email


def email_row(created_at: datetime, status: str = "queued", **overrides: Any) -> Email:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "sender": "sender@example.com",
        "to_addrs": ["jane@example.com"],
        "cc_addrs": [],
        "bcc_addrs": [],
        "reply_to": [],
        "recipients": ["jane@example.com"],
        "subject": "Hello",
        "text_body": "Hi",
        "headers": {},
        "message_id": new_message_id("example.com"),
        "status": status,
        "attempts": 0 if status == "queued" else 1,
        "created_at": created_at,
        "updated_at": created_at,
        "sent_at": created_at if status == "sent" else None,
        "failed_at": created_at if status == "failed" else None,
        "next_attempt_at": created_at if status in ("queued", "retrying") else None,
    }
    values.update(overrides)
    return Email(**values)


async def insert_emails(sessions: async_sessionmaker[AsyncSession], *emails: Email) -> None:
    async with sessions() as session:
        session.add_all(emails)
        await session.commit()


def batch_items(count: int, *, prefix: str = "batch", **changes: Any) -> list[dict[str, Any]]:
    """``count`` valid POST /send/batch items, each with its own recipient and subject."""
    return [
        {
            "to": f"{prefix}{n}@example.com",
            "subject": f"{prefix} {n}",
            "text": f"Body of {prefix} {n}",
            **changes,
        }
        for n in range(count)
    ]


async def stored_emails(
    sessions: async_sessionmaker[AsyncSession], ids: list[uuid.UUID] | None = None
) -> dict[uuid.UUID, Email]:
    """The emails (with their delivery attempts) by id: these ``ids``, or every one stored."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    stmt = select(Email).options(selectinload(Email.delivery_attempts))
    if ids is not None:
        stmt = stmt.where(Email.id.in_(ids))
    async with sessions() as session:
        rows = (await session.execute(stmt)).scalars().all()
    return {email.id: email for email in rows}
