"""What PostgreSQL and the sink's record say about the accepted emails."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg

TERMINAL = ("sent", "failed")


@dataclass
class Row:
    status: str
    message_id: str
    subject: str
    attempts: int
    done_at: float | None  # epoch seconds of sent_at / failed_at


async def fetch_rows(database_url: str, ids: list[str]) -> dict[str, Row]:
    conn = await asyncpg.connect(database_url)
    try:
        records = await conn.fetch(
            "SELECT id, status, message_id, subject, attempts,"
            " extract(epoch FROM coalesce(sent_at, failed_at)) AS done_at"
            " FROM emails WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await conn.close()
    return {
        str(r["id"]): Row(
            status=str(r["status"]),
            message_id=str(r["message_id"]),
            subject=str(r["subject"]),
            attempts=int(r["attempts"]),
            done_at=float(r["done_at"]) if r["done_at"] is not None else None,
        )
        for r in records
    }


async def attempt_counts(database_url: str) -> dict[str, tuple[int, list[int | None]]]:
    """email id -> (number of delivery_attempts rows, their SMTP codes in order)."""
    conn = await asyncpg.connect(database_url)
    try:
        records = await conn.fetch(
            "SELECT email_id, attempt_number, smtp_code FROM delivery_attempts"
            " ORDER BY email_id, attempt_number"
        )
    finally:
        await conn.close()
    found: dict[str, tuple[int, list[int | None]]] = {}
    for r in records:
        key = str(r["email_id"])
        count, codes = found.get(key, (0, []))
        code = r["smtp_code"]
        found[key] = (count + 1, [*codes, int(code) if code is not None else None])
    return found


async def wait_terminal(database_url: str, ids: list[str], deadline: float) -> dict[str, Row]:
    """Poll until every id has a terminal row, or `deadline` (time.time()) passes."""
    while True:
        rows = await fetch_rows(database_url, ids)
        pending = [i for i in ids if i not in rows or rows[i].status not in TERMINAL]
        if not pending or time.time() > deadline:
            return rows
        await asyncio.sleep(1.0)


def received(record: Path) -> Counter[str]:
    text = record.read_text(encoding="utf-8") if record.exists() else ""
    return Counter(line.strip() for line in text.splitlines() if line.strip())


@dataclass
class Attempt:
    outcome: str
    smtp_code: int | None
    message: str
    duration_ms: int


async def first_attempts(database_url: str) -> dict[str, Attempt]:
    """email id -> its first delivery attempt."""
    conn = await asyncpg.connect(database_url)
    try:
        records = await conn.fetch(
            "SELECT email_id, outcome, smtp_code, message, duration_ms FROM delivery_attempts"
            " WHERE attempt_number = 1"
        )
    finally:
        await conn.close()
    return {
        str(r["email_id"]): Attempt(
            outcome=str(r["outcome"]),
            smtp_code=r["smtp_code"],
            message=str(r["message"] or ""),
            duration_ms=int(r["duration_ms"]),
        )
        for r in records
    }
