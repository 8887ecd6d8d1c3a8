"""Rows for tests that need an email in a given state at a given time."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.message import new_message_id
from mailroom.emails.models import Email
from mailroom.projects.models import DEFAULT_PROJECT_ID


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
        "project_id": DEFAULT_PROJECT_ID,
        "status": status,
        "attempts": 0 if status == "queued" else 1,
        "created_at": created_at,
        "updated_at": created_at,
        "sent_at": created_at if status in ("sent", "bounced") else None,
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


def email_in(status: str, *, created_at: datetime | None = None, **overrides: Any) -> Email:
    """An email row in any ``status``, with the columns its CHECK constraints tie to it.

    ``scheduled`` is due in an hour, ``sending`` holds a 30 s lease, ``cancelled`` has
    its ``cancelled_at``; ``overrides`` win.
    """
    from datetime import UTC, timedelta

    now = datetime.now(UTC)
    created = created_at or now
    values: dict[str, Any] = {"attempts": 0 if status in ("queued", "scheduled") else 1}
    if status == "scheduled":
        values["send_at"] = values["next_attempt_at"] = now + timedelta(hours=1)
    elif status == "sending":
        values["lease_expires_at"] = now + timedelta(seconds=30)
    elif status == "cancelled":
        values["cancelled_at"] = created
    elif status == "failed":
        values.update(last_error_code=550, last_error_enhanced="5.1.1", last_error_message="No")
    values.update(overrides)
    return email_row(created, status, **values)


async def key_id(sessions: async_sessionmaker[AsyncSession], api_key: str) -> uuid.UUID:
    """The id of an API key, from the key itself."""
    from sqlalchemy import select

    from mailroom.auth.keys import hash_key
    from mailroom.auth.models import ApiKey

    async with sessions() as session:
        found = await session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_key(api_key)))
    return found.scalar_one()


async def make_sandbox_key(
    sessions: async_sessionmaker[AsyncSession], scopes: tuple[str, ...] | None = None
) -> str:
    """A key whose emails are logged as sent but never handed to an SMTP server."""
    import secrets

    from mailroom.auth.scopes import Scope
    from mailroom.auth.service import create_key

    chosen = tuple(Scope(s) for s in scopes) if scopes is not None else tuple(Scope)
    async with sessions() as session:
        _, key = await create_key(
            session, name=f"sandbox-{secrets.token_hex(6)}", scopes=chosen, sandbox=True
        )
        await session.commit()
    return key


async def update_email(
    sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID, **values: Any
) -> None:
    """Set columns of one email directly (to make it due, say), bypassing the service."""
    from sqlalchemy import update

    async with sessions() as session:
        await session.execute(update(Email).where(Email.id == email_id).values(**values))
        await session.commit()


def attachment_json(filename: str, content: bytes, **fields: Any) -> dict[str, Any]:
    """One item of POST /send's ``attachments``: ``content`` base64-encoded, ``fields`` as given."""
    import base64

    return {"filename": filename, "content": base64.b64encode(content).decode("ascii"), **fields}


def awkward_bytes(size: int = 300 * 1024, *, seed: int = 1) -> bytes:
    """``size`` bytes a careless mail pipeline would mangle, the same for the same ``seed``.

    Every byte value, lines that start with '.', a line of just '.', CRLF, lone LF and
    lone CR, NULs and a "From " line come first; seeded noise fills the rest.
    """
    import random

    head = (
        bytes(range(256))
        + b"\r\n.\r\n.leading dot\r\n..two dots\n.\n"
        + b"lone LF\nlone CR\rCRLF\r\n\r\n\x00\x00NUL\x00\r\nFrom the start\n"
        + bytes(range(255, -1, -1))
    )
    noise = random.Random(seed).randbytes(max(0, size - len(head)))
    return (head + noise)[:size]


def png_bytes() -> bytes:
    """A real (1x1, transparent) PNG image, built chunk by chunk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def stored_attachments(
    sessions: async_sessionmaker[AsyncSession], email_id: uuid.UUID | None = None
) -> list[Any]:
    """The email_attachments rows (content included): this email's in order, or every one."""
    from sqlalchemy import select

    from mailroom.emails.models import EmailAttachment

    stmt = select(EmailAttachment).order_by(EmailAttachment.email_id, EmailAttachment.position)
    if email_id is not None:
        stmt = stmt.where(EmailAttachment.email_id == email_id)
    async with sessions() as session:
        return list((await session.execute(stmt)).scalars().all())
