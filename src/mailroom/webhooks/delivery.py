"""Delivering webhooks: claim deliveries, sign and send each, record the attempt, and
schedule the next one or give up; plus the pass that hands due deliveries to BullMQ.

A delivery's attempt is claimed in one transaction and recorded in another, with the
request in between: a worker killed mid-request leaves a lease that expires, and the
delivery is sent again (receivers deduplicate on `webhook-id`, which never changes).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.settings import Settings
from mailroom.webhooks import deliveries_repository, signing
from mailroom.webhooks.deliveries_repository import AttemptRow, ClaimedDelivery
from mailroom.webhooks.events import payload
from mailroom.webhooks.schedule import next_wait
from mailroom.webhooks.sender import MAX_RESPONSE_BODY, SendOutcome, WebhookSender

log = structlog.get_logger(__name__)

DISPATCH_LOCK = 0x6D61696C776862  # one dispatcher pass at a time, across workers
MAX_ERROR = 1000


def lease(settings: Settings) -> timedelta:
    """How long a claimed attempt is the worker's: twice the request's timeout and a margin
    (the request cannot take longer; a killed worker's deliveries come back after it)."""
    return timedelta(seconds=settings.webhook_timeout * 2 + 5)


def body_of(delivery: ClaimedDelivery) -> bytes:
    """The request body: the same bytes for every attempt and replay of the event."""
    content = payload(delivery.event_type, delivery.event_at, delivery.event_data)
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


async def send_one(delivery: ClaimedDelivery, sender: WebhookSender) -> SendOutcome:
    body = body_of(delivery)
    headers = signing.headers(delivery.secrets, str(delivery.event_id), int(time.time()), body)
    return await sender.send(delivery.url, headers, body)


@dataclass(frozen=True)
class Delivered:
    delivery: ClaimedDelivery
    row: AttemptRow
    recorded: bool


def decide(
    delivery: ClaimedDelivery,
    outcome: SendOutcome,
    *,
    settings: Settings,
    rng: random.Random,
    now: datetime,
) -> AttemptRow:
    status, next_at = "succeeded", None
    if not outcome.succeeded:
        wait = None
        if outcome.status_code != 410:  # Gone: the endpoint is disabled, nothing follows
            wait = next_wait(
                delivery.attempt,
                settings.webhook_retry_delays,
                rng=rng,
                retry_after=outcome.retry_after,
            )
        status = "failed" if wait is None else "pending"
        next_at = None if wait is None else now + timedelta(seconds=wait)
    error = outcome.error
    if error is None and not outcome.succeeded:
        error = f"The receiver answered {outcome.status_code}"
        if outcome.status_code is not None and 300 <= outcome.status_code < 400:
            error += " (redirects are not followed)"
    return AttemptRow(
        delivery_id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        attempt=delivery.attempt,
        status=status,
        response_code=outcome.status_code,
        duration_ms=outcome.duration_ms,
        response_body=outcome.body[:MAX_RESPONSE_BODY] if outcome.body else None,
        error=error[:MAX_ERROR] if error else None,
        next_attempt_at=next_at,
    )


async def deliver(
    sessions: async_sessionmaker[AsyncSession],
    ids: Sequence[uuid.UUID],
    *,
    sender: WebhookSender,
    settings: Settings,
    rng: random.Random,
) -> list[Delivered]:
    """Claim these deliveries, send the claimed ones at once, record every attempt."""
    async with sessions() as session:
        claimed = await deliveries_repository.claim(session, ids, lease(settings))
        await session.commit()
    if not claimed:
        return []
    outcomes = await asyncio.gather(*(send_one(c, sender) for c in claimed))
    now = datetime.now(UTC)
    rows = [
        decide(c, o, settings=settings, rng=rng, now=now)
        for c, o in zip(claimed, outcomes, strict=True)
    ]
    async with sessions() as session:
        recorded = await deliveries_repository.record(session, rows)
        by_endpoint: dict[uuid.UUID, list[SendOutcome]] = {}
        for c, o in zip(claimed, outcomes, strict=True):
            by_endpoint.setdefault(c.endpoint_id, []).append(o)
        for endpoint_id, results in sorted(by_endpoint.items()):
            reason = await deliveries_repository.endpoint_health(
                session,
                endpoint_id,
                succeeded=any(o.succeeded for o in results),
                gone=any(o.status_code == 410 for o in results),
                disable_after=timedelta(seconds=settings.webhook_disable_after),
            )
            if reason is not None:
                log.warning(
                    "webhooks.endpoint_disabled", endpoint_id=str(endpoint_id), reason=reason
                )
        await session.commit()
    for row in rows:
        log.info(
            "webhooks.attempt",
            event_id=str(row.event_id),
            event_type=row.event_type,
            endpoint_id=str(row.endpoint_id),
            attempt=row.attempt,
            status=row.status,
            response_code=row.response_code,
            duration_ms=row.duration_ms,
            error=row.error,
        )
    return [Delivered(c, r, c.id in recorded) for c, r in zip(claimed, rows, strict=True)]


async def take_due(
    sessions: async_sessionmaker[AsyncSession], *, settings: Settings, limit: int
) -> list[tuple[uuid.UUID, int]]:
    """One dispatcher pass (one at a time, by an advisory lock): due deliveries, marked
    as handed over; the caller hands them to BullMQ (or gives them back if it cannot)."""
    async with sessions() as session:
        locked = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": DISPATCH_LOCK}
        )
        if not locked:
            return []
        due = await deliveries_repository.take_due(
            session, limit=limit, redispatch_after=lease(settings)
        )
        await session.commit()
    return due


async def give_back(sessions: async_sessionmaker[AsyncSession], ids: Sequence[uuid.UUID]) -> None:
    """Deliveries BullMQ did not take: due again at the next pass."""
    async with sessions() as session:
        await session.execute(
            text(
                "UPDATE webhook_deliveries SET dispatched_at = NULL "
                "WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending'"
            ),
            {"ids": list(ids)},
        )
        await session.commit()
