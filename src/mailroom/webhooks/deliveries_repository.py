"""SQL of deliveries: which are due, claims, the record of each attempt, replays, purge.

Functions flush, never commit. A delivery is ``pending`` until it succeeds or its
schedule is spent (``failed``). A claim is guarded (still pending, due, not leased, its
endpoint enabled) and leased, so a duplicate job or a second worker finds nothing to do.
One email's deliveries to one endpoint go out in the order of its events: a delivery
waits while an earlier one of the same email and endpoint has not been tried yet or is
being tried (one in backoff no longer holds the later ones back).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# No earlier delivery of the same email to the same endpoint holds this one back. Written
# as a scalar subquery, not NOT EXISTS: PostgreSQL plans NOT EXISTS as an anti-join, and a
# cached plan made while the table was nearly empty read every pending delivery for each
# candidate (seconds per pass once a backlog built up). A scalar subquery is always one
# index probe per candidate, whatever the statistics said.
_EARLIER_WAITING = """
    (SELECT p.id FROM webhook_deliveries p
     WHERE p.endpoint_id = d.endpoint_id AND p.email_id = d.email_id
       AND p.status = 'pending' AND p.event_seq < d.event_seq
       AND (p.attempts = 0 OR p.lease_expires_at > now())
     LIMIT 1) IS NULL
"""

_CLAIMABLE = f"""
    d.next_attempt_at <= now()
    AND (d.lease_expires_at IS NULL OR d.lease_expires_at < now())
    AND {_EARLIER_WAITING}
"""
# Two reads, each on a partial index of its own, so that a pass never walks the deliveries
# already handed over and waiting in BullMQ (under a backlog, tens of thousands): those
# never handed over (or given back) in the order they fell due, and those handed over more
# than a lease ago (Redis lost them, or a worker died holding them).
_DUE = text(
    f"""
    WITH fresh AS (
        SELECT d.id FROM webhook_deliveries d
        JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.enabled
        WHERE d.status = 'pending' AND d.dispatched_at IS NULL AND {_CLAIMABLE}
        ORDER BY d.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    ),
    lost AS (
        SELECT d.id FROM webhook_deliveries d
        JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.enabled
        WHERE d.status = 'pending' AND d.dispatched_at IS NOT NULL
          AND d.dispatched_at < now() - CAST(:again AS interval) AND {_CLAIMABLE}
        ORDER BY d.dispatched_at
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries AS u SET dispatched_at = now()
    FROM (SELECT id FROM fresh UNION ALL SELECT id FROM lost) AS due WHERE u.id = due.id
    RETURNING u.id, u.attempts
    """
)


async def take_due(
    session: AsyncSession, *, limit: int, redispatch_after: timedelta
) -> list[tuple[uuid.UUID, int]]:
    """Due deliveries not handed to BullMQ lately (or lost there): (id, attempts so far);
    at most ``limit`` of each kind."""
    rows = await session.execute(_DUE, {"limit": limit, "again": redispatch_after})
    return [(r.id, r.attempts) for r in rows]


@dataclass(frozen=True)
class ClaimedDelivery:
    id: uuid.UUID
    attempt: int
    event_id: uuid.UUID
    event_type: str
    event_data: dict[str, Any]
    event_at: datetime
    endpoint_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]  # the current secret, and the previous one while it lasts


_CLAIM = text(
    f"""
    UPDATE webhook_deliveries AS d SET
        attempts = d.attempts + 1, lease_expires_at = now() + CAST(:lease AS interval),
        updated_at = now()
    FROM webhook_endpoints w, email_events e
    WHERE d.id = ANY(CAST(:ids AS uuid[])) AND w.id = d.endpoint_id AND e.id = d.event_id
      AND w.enabled AND d.status = 'pending'
      AND d.next_attempt_at <= now() + interval '2 seconds'
      AND (d.lease_expires_at IS NULL OR d.lease_expires_at < now())
      AND {_EARLIER_WAITING}
    RETURNING d.id, d.attempts, e.id AS event_id, e.type, e.data, e.created_at, w.id AS endpoint_id,
        w.url, w.secret,
        CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END AS previous
    """
)
_UNCLAIMED = text(
    """
    UPDATE webhook_deliveries SET dispatched_at = NULL
    WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending'
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    """
)


async def claim(
    session: AsyncSession, ids: Sequence[uuid.UUID], lease: timedelta
) -> list[ClaimedDelivery]:
    """Take the claimable ones of these deliveries for one attempt each; the others that
    still wait (behind an earlier event) go back to be dispatched again."""
    if not ids:
        return []
    rows = (await session.execute(_CLAIM, {"ids": list(ids), "lease": lease})).all()
    claimed = [
        ClaimedDelivery(
            id=r.id,
            attempt=r.attempts,
            event_id=r.event_id,
            event_type=r.type,
            event_data=r.data,
            event_at=r.created_at,
            endpoint_id=r.endpoint_id,
            url=r.url,
            secrets=(r.secret, r.previous) if r.previous else (r.secret,),
        )
        for r in rows
    ]
    taken = {c.id for c in claimed}
    left = [i for i in ids if i not in taken]
    if left:
        await session.execute(_UNCLAIMED, {"ids": left})
    return claimed


@dataclass(frozen=True)
class AttemptRow:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    status: str  # succeeded, failed, pending (failed, to be tried at next_attempt_at)
    response_code: int | None
    duration_ms: int
    response_body: str | None
    error: str | None
    next_attempt_at: datetime | None


_RECORD = text(
    """
    WITH moved AS (
        UPDATE webhook_deliveries AS d SET
            status = v.status, next_attempt_at = v.next_attempt_at, lease_expires_at = NULL,
            dispatched_at = NULL, updated_at = now()
        FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[]),
                    CAST(:statuses AS text[]), CAST(:next AS timestamptz[]))
            AS v(id, attempt, status, next_attempt_at)
        WHERE d.id = v.id AND d.attempts = v.attempt AND d.status = 'pending'
          AND d.lease_expires_at IS NOT NULL  -- being tried: a second record is a no-op
        RETURNING d.id
    )
    INSERT INTO webhook_attempts (delivery_id, endpoint_id, event_id, event_type, attempt,
        status, response_code, duration_ms, response_body, error, next_attempt_at)
    SELECT a.delivery_id, a.endpoint_id, a.event_id, a.event_type, a.attempt, a.status,
        a.response_code, a.duration_ms, a.response_body, a.error, a.next_attempt_at
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:endpoints AS uuid[]), CAST(:events AS uuid[]),
        CAST(:types AS text[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]),
        CAST(:codes AS integer[]), CAST(:durations AS integer[]), CAST(:bodies AS text[]),
        CAST(:errors AS text[]), CAST(:next AS timestamptz[])
    ) AS a(delivery_id, endpoint_id, event_id, event_type, attempt, status, response_code,
           duration_ms, response_body, error, next_attempt_at)
    JOIN moved ON moved.id = a.delivery_id
    RETURNING delivery_id
    """
)


async def record(session: AsyncSession, rows: Sequence[AttemptRow]) -> set[uuid.UUID]:
    """Record the attempts and move their deliveries on; returns the deliveries moved (the
    others were no longer this worker's: a lease that expired, a duplicate)."""
    if not rows:
        return set()
    result = await session.execute(
        _RECORD,
        {
            "ids": [r.delivery_id for r in rows],
            "endpoints": [r.endpoint_id for r in rows],
            "events": [r.event_id for r in rows],
            "types": [r.event_type for r in rows],
            "attempts": [r.attempt for r in rows],
            "statuses": [r.status for r in rows],
            "codes": [r.response_code for r in rows],
            "durations": [r.duration_ms for r in rows],
            "bodies": [r.response_body for r in rows],
            "errors": [r.error for r in rows],
            "next": [r.next_attempt_at for r in rows],
        },
    )
    return {r[0] for r in result}


_ENDPOINT_HEALTH = text(
    """
    UPDATE webhook_endpoints SET
        failing_since = CASE WHEN :succeeded THEN NULL ELSE coalesce(failing_since, now()) END,
        enabled = CASE
            WHEN :gone THEN false
            WHEN NOT :succeeded AND coalesce(failing_since, now())
                 <= now() - CAST(:disable_after AS interval) THEN false
            ELSE enabled END,
        disabled_reason = CASE
            WHEN :gone THEN 'The receiver answered 410 Gone.'
            WHEN NOT :succeeded AND enabled AND coalesce(failing_since, now())
                 <= now() - CAST(:disable_after AS interval)
                THEN 'Every attempt failed since ' || to_char(failing_since AT TIME ZONE 'UTC',
                     'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '.'
            ELSE disabled_reason END,
        updated_at = now()
    WHERE id = :id AND (
        -- Only a change is written: the healthy case, every attempt of a busy endpoint,
        -- leaves the row alone, so concurrent records never queue on its lock.
        :gone
        OR (:succeeded AND failing_since IS NOT NULL)
        OR (NOT :succeeded AND (failing_since IS NULL
            OR (enabled AND failing_since <= now() - CAST(:disable_after AS interval)))))
    RETURNING enabled, disabled_reason
    """
)


async def endpoint_health(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    succeeded: bool,
    gone: bool,
    disable_after: timedelta,
) -> str | None:
    """Note an endpoint's latest outcome (when it changes its health); returns why it was
    disabled if it now is."""
    row = (
        await session.execute(
            _ENDPOINT_HEALTH,
            {
                "id": endpoint_id,
                "succeeded": succeeded,
                "gone": gone,
                "disable_after": disable_after,
            },
        )
    ).first()
    if row is None or row.enabled:
        return None
    return str(row.disabled_reason)


_REPLAY = text(
    """
    INSERT INTO webhook_deliveries (id, event_id, endpoint_id, email_id, event_seq, status,
                                    next_attempt_at)
    SELECT gen_random_uuid(), e.id, w.id, e.email_id, e.seq, 'pending', now()
    FROM email_events e JOIN webhook_endpoints w ON w.id = :endpoint
    WHERE e.project_id = w.project_id
      AND (e.type = ANY(w.events)
           OR EXISTS (SELECT 1 FROM webhook_deliveries o
                      WHERE o.event_id = e.id AND o.endpoint_id = w.id))
      AND (CAST(:ids AS uuid[]) IS NULL OR e.id = ANY(CAST(:ids AS uuid[])))
      AND (CAST(:since AS timestamptz) IS NULL OR e.created_at >= CAST(:since AS timestamptz))
      AND (CAST(:until AS timestamptz) IS NULL OR e.created_at < CAST(:until AS timestamptz))
    ORDER BY e.seq
    LIMIT :limit
    RETURNING id
    """
)


async def replay(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    event_ids: Sequence[uuid.UUID] | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[uuid.UUID]:
    """A new delivery, due now, of each chosen event of the endpoint's project that it
    subscribes to (or was sent before); returns their ids."""
    rows = await session.execute(
        _REPLAY,
        {
            "endpoint": endpoint_id,
            "ids": list(event_ids) if event_ids is not None else None,
            "since": since,
            "until": until,
            "limit": limit,
        },
    )
    return [r[0] for r in rows]


async def add_delivery(
    session: AsyncSession, endpoint_id: uuid.UUID, event_id: uuid.UUID
) -> uuid.UUID:
    """A delivery of one event to one endpoint, due now, that its caller sends itself (a
    test event's): marked as dispatched, so the dispatcher leaves it alone unless it is
    still not sent after a lease's time."""
    row = (
        await session.execute(
            text(
                """
                INSERT INTO webhook_deliveries (id, event_id, endpoint_id, email_id, event_seq,
                                                status, next_attempt_at, dispatched_at)
                SELECT gen_random_uuid(), e.id, :endpoint, e.email_id, e.seq, 'pending', now(),
                       now()
                FROM email_events e WHERE e.id = :event
                RETURNING id
                """
            ),
            {"endpoint": endpoint_id, "event": event_id},
        )
    ).one()
    return uuid.UUID(str(row[0]))


async def purge_attempts(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` attempts older than ``before`` (with the finished deliveries
    and test events left without any); returns how many attempts went."""
    result = await session.execute(
        text(
            """
            WITH gone AS (
                DELETE FROM webhook_attempts WHERE id = ANY(ARRAY(
                    SELECT id FROM webhook_attempts WHERE created_at < :before
                    ORDER BY created_at LIMIT :limit))
                RETURNING delivery_id
            ),
            finished AS (
                DELETE FROM webhook_deliveries d
                WHERE d.status <> 'pending' AND d.updated_at < :before
                  AND d.id IN (SELECT delivery_id FROM gone)
            )
            SELECT count(*) FROM gone
            """
        ),
        {"before": before, "limit": limit},
    )
    await session.execute(
        text(
            "DELETE FROM email_events e WHERE e.email_id IS NULL AND e.created_at < :before "
            "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)"
        ),
        {"before": before},
    )
    return int(result.scalar_one())
