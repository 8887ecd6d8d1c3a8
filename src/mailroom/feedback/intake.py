"""Group commit for POST /feedback/{provider}: the events of concurrent requests recorded
in one transaction.

Most providers post one event per request (SNS, Postmark, Mailgun), and a request's own
transaction is a handful of round trips for a single row each. Here the requests that
arrive while a group is being recorded share the next one (as POST /send's intake does),
so a burst of webhooks costs a few statements per group. Each request still answers only
once its events are committed; a group that fails fails every request in it, and the
providers send them again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.coalescer import Coalescer
from mailroom.emails import feedback
from mailroom.emails.feedback import FeedbackEvent, Recorded
from mailroom.settings import Settings

MAX_GROUP = 100  # requests per transaction


class FeedbackIntake:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._groups: Coalescer[list[FeedbackEvent], Recorded] = Coalescer(
            self._record, max_items=MAX_GROUP, serial=True
        )

    async def record(self, events: list[FeedbackEvent]) -> Recorded:
        """Return once these events are committed: what became of them."""
        if not events:
            return Recorded()
        return await self._groups.submit(events)

    async def _record(self, requests: list[list[FeedbackEvent]]) -> list[Recorded]:
        every = [event for events in requests for event in events]
        async with self._sessions() as session:
            outcomes = await feedback.record_each(session, self._settings, every, datetime.now(UTC))
            await session.commit()
        results: list[Recorded] = []
        start = 0
        for events in requests:
            results.append(feedback.tally(outcomes[start : start + len(events)]))
            start += len(events)
        return results
