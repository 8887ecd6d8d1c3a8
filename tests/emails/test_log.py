"""The log against real PostgreSQL: today's summary across time zones, paging under inserts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import log
from mailroom.emails.log_query import LogQuery
from mailroom.projects.access import ProjectAccess
from tests.support.factories import email_row, insert_emails

pytestmark = pytest.mark.usefixtures("clean")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "date", "counts"),
    [
        # now = 00:30 UTC on 11 March: only what was created since midnight UTC.
        ("UTC", "2026-03-11", (2, 1, 0, 1)),
        # 09:30 in Tokyo: the local day began at 15:00 UTC on the 10th (inclusive).
        ("Asia/Tokyo", "2026-03-11", (4, 1, 1, 2)),
        # 17:30 on the 10th in Los Angeles (PDT, UTC-7): everything since 07:00 UTC.
        ("America/Los_Angeles", "2026-03-10", (5, 2, 1, 2)),
    ],
)
async def test_summary_counts_today_in_the_given_time_zone(
    sessions: async_sessionmaker[AsyncSession], tz: str, date: str, counts: tuple[int, ...]
) -> None:
    await insert_emails(
        sessions,
        email_row(_utc("2026-03-10T14:59:59"), "sent"),
        email_row(_utc("2026-03-10T15:00:00"), "failed"),
        email_row(_utc("2026-03-10T23:59:59"), "queued"),
        email_row(_utc("2026-03-11T00:00:00"), "sent"),
        email_row(_utc("2026-03-11T00:10:00"), "retrying"),
    )
    async with sessions() as session:
        page = await log.list_log(
            session,
            LogQuery(tz=tz),
            access=ProjectAccess.operator(),
            now=_utc("2026-03-11T00:30:00"),
        )
    summary = page.summary
    assert (summary.date, summary.timezone) == (date, tz)
    assert (summary.total, summary.sent, summary.failed, summary.pending) == counts
    assert summary.pending == summary.total - summary.sent - summary.failed


async def _collect_by_cursor(client: httpx.AsyncClient, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": 10, **params, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/logs/email", params=query)).json()
        seen += [item["id"] for item in page["data"]]
        # Keep the log moving while paging: these are newer than every page left.
        for _ in range(3):
            await client.post("/send", json={"to": "new@example.com", "subject": "n", "text": "n"})
        cursor = page["pagination"]["nextCursor"]
        if not page["pagination"]["hasMore"]:
            assert cursor is None
            return seen


async def test_paging_returns_every_row_once_while_emails_keep_arriving(
    client: httpx.AsyncClient,
) -> None:
    original = []
    for i in range(45):
        body = {"to": f"user{i}@example.com", "subject": f"s{i}", "text": "t"}
        original.append((await client.post("/send", json=body)).json()["id"])
    snapshot = (await client.get("/logs/email", params={"limit": 1})).json()["data"][0]["createdAt"]

    by_cursor = await _collect_by_cursor(client)
    assert sorted(by_cursor) == sorted(original)
    assert len(by_cursor) == len(set(by_cursor))
    assert by_cursor == list(reversed(original))  # newest first

    # Page numbers shift as rows arrive unless the window is pinned: `until` pins it.
    by_page: list[str] = []
    for page_number in range(1, 6):
        params = {"page": page_number, "limit": 10, "until": snapshot}
        page = (await client.get("/logs/email", params=params)).json()
        await client.post("/send", json={"to": "new@example.com", "subject": "n", "text": "n"})
        by_page += [item["id"] for item in page["data"]]
        assert page["pagination"]["totalPages"] == 5
        assert page["pagination"]["hasMore"] is (page_number < 5)
    # `until` is exclusive: the newest original row is on no page.
    assert sorted(by_page) == sorted(original[:-1])
    assert len(by_page) == len(set(by_page))
