"""SQL of handing claimed emails back unsent: a provider's limit kept them from going.

No attempt was made, so none is recorded: the claim is undone (its attempt number
given back) and the email waits in the status it had, ``queued`` or ``retrying``,
with ``next_attempt_at`` set to when capacity returns. Flushes, never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails.states import PACE, EmailStatus

assert PACE.sources == {EmailStatus.SENDING}


@dataclass(frozen=True)
class Release:
    email_id: uuid.UUID
    attempt: int  # the attempt the claim was for: given back
    next_attempt_at: datetime


# Locked in id order like every writer of several emails (see delivery_repository).
_RELEASE = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT id FROM emails WHERE id = ANY(CAST(:ids AS uuid[]))
        ORDER BY id
        FOR NO KEY UPDATE
    )
    UPDATE emails AS e SET
        status = CASE WHEN e.attempts - 1 > e.attempts_before_retry
                      THEN :retrying ELSE :queued END,
        attempts = e.attempts - 1,
        lease_expires_at = NULL,
        next_attempt_at = v.next_attempt_at,
        updated_at = now()
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS integer[]),
        CAST(:next_attempt_at AS timestamptz[])
    ) AS v(id, attempt, next_attempt_at)
    JOIN locked ON locked.id = v.id
    WHERE e.id = v.id AND e.status = :sending AND e.attempts = v.attempt
    RETURNING e.id
    """
)


async def release(session: AsyncSession, releases: Sequence[Release]) -> set[uuid.UUID]:
    """Hand these claims back; returns the emails this worker still owned."""
    if not releases:
        return set()
    rows = await session.execute(
        _RELEASE,
        {
            "ids": [r.email_id for r in releases],
            "attempts": [r.attempt for r in releases],
            "next_attempt_at": [r.next_attempt_at for r in releases],
            "retrying": EmailStatus.RETRYING.value,
            "queued": EmailStatus.QUEUED.value,
            "sending": EmailStatus.SENDING.value,
        },
    )
    return {row[0] for row in rows}
