"""The suppression list's use cases: the routes, the CLI, sending, the worker and feedback.

Which list a project uses is SUPPRESSION_SCOPE's: its own (``project``, the default) or
the one every project shares (``global``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.errors import InvalidRequest, NotFound
from mailroom.log_config import mask_address
from mailroom.settings import Settings
from mailroom.suppressions import repository
from mailroom.suppressions.addresses import normalize
from mailroom.suppressions.models import GLOBAL_LIST_ID, Reason, Suppression
from mailroom.suppressions.repository import NewSuppression
from mailroom.suppressions.schemas import (
    AddedSuppressions,
    AddSuppressions,
    SuppressionItem,
    SuppressionPage,
    SuppressionPagination,
)

log = structlog.get_logger(__name__)

MAX_LIMIT = 100
_MAX_CURSOR = 200


def list_id(settings: Settings, project_id: uuid.UUID) -> uuid.UUID:
    """The list a project's sends are checked against and its bounces added to."""
    return GLOBAL_LIST_ID if settings.suppression_scope == "global" else project_id


def keys(addresses: Iterable[str]) -> list[str]:
    """The list's keys of these (already validated) bare addresses."""
    return [normalize(a) for a in addresses]


async def suppressed(
    session: AsyncSession,
    settings: Settings,
    project_id: uuid.UUID,
    addresses: Iterable[str],
    now: datetime,
) -> set[str]:
    """Which of these bare addresses are suppressed now (normalized keys): one indexed query."""
    return await repository.suppressed_among(
        session, list_id(settings, project_id), keys(addresses), now
    )


async def suppress(
    session: AsyncSession,
    settings: Settings,
    project_id: uuid.UUID,
    address: str,
    reason: Reason,
    *,
    email_id: uuid.UUID | None,
    now: datetime,
    expires_at: datetime | None = None,
) -> None:
    """Add one address because of what happened to an email (a bounce, a complaint)."""
    try:
        key = normalize(address)
    except ValueError:
        log.warning("suppression.unusable_address", reason=reason.value)
        return
    await repository.add(
        session,
        list_id(settings, project_id),
        [NewSuppression(key, reason.value, email_id, expires_at)],
        now,
    )
    log.info(
        "suppression.added",
        address=mask_address(key),
        reason=reason.value,
        email_id=str(email_id) if email_id else None,
    )


@dataclass(frozen=True)
class Suppress:
    """One address to suppress because of what happened to an email."""

    project_id: uuid.UUID
    address: str
    reason: Reason
    email_id: uuid.UUID | None


async def suppress_many(
    session: AsyncSession, settings: Settings, entries: list[Suppress], *, now: datetime
) -> None:
    """Add these addresses (bounces, complaints): one statement per list."""
    by_list: dict[uuid.UUID, list[NewSuppression]] = {}
    for entry in entries:
        try:
            key = normalize(entry.address)
        except ValueError:
            log.warning("suppression.unusable_address", reason=entry.reason.value)
            continue
        by_list.setdefault(list_id(settings, entry.project_id), []).append(
            NewSuppression(key, entry.reason.value, entry.email_id)
        )
        log.info(
            "suppression.added",
            address=mask_address(key),
            reason=entry.reason.value,
            email_id=str(entry.email_id) if entry.email_id else None,
        )
    for target, rows in by_list.items():
        await repository.add(session, target, rows, now)


def item(row: Suppression) -> SuppressionItem:
    return SuppressionItem(
        address=row.address,
        reason=Reason(row.reason),
        email_id=row.email_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


async def add_manual(
    session: AsyncSession,
    settings: Settings,
    project_id: uuid.UUID,
    request: AddSuppressions,
    now: datetime,
) -> AddedSuppressions:
    if request.expires_at is not None and request.expires_at <= now:
        raise InvalidRequest(
            "Invalid request. expiresAt: must be in the future",
            details=[{"field": "expiresAt", "message": "must be in the future"}],
        )
    rows = [NewSuppression(a, request.reason, None, request.expires_at) for a in request.addresses]
    written = await repository.add(session, list_id(settings, project_id), rows, now)
    log.info("suppression.added_manually", addresses=len(written), reason=request.reason)
    return AddedSuppressions(added=len(written), data=[item(r) for r in written])


def _address(value: str) -> str:
    try:
        return normalize(value)
    except ValueError:
        raise NotFound(f"No suppression for {value[:80]!r}") from None


async def get(
    session: AsyncSession, settings: Settings, project_id: uuid.UUID, address: str, now: datetime
) -> SuppressionItem:
    row = await repository.get(session, list_id(settings, project_id), _address(address), now)
    if row is None:
        raise NotFound(f"No suppression for {address[:80]!r}")
    return item(row)


async def remove(
    session: AsyncSession, settings: Settings, project_id: uuid.UUID, address: str
) -> None:
    key = _address(address)
    if not await repository.remove(session, list_id(settings, project_id), key):
        raise NotFound(f"No suppression for {address[:80]!r}")
    log.info("suppression.removed", address=mask_address(key))


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = json.dumps({"t": created_at.isoformat(), "i": row_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    invalid = InvalidRequest(
        "Invalid request. cursor: pass back a nextCursor unchanged",
        details=[{"field": "cursor", "message": "is not a cursor this service produced"}],
    )
    if len(cursor) > _MAX_CURSOR:
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = datetime.fromisoformat(payload["t"])
        row_id = payload["i"]
    except (ValueError, binascii.Error, KeyError, TypeError, RecursionError):
        raise invalid from None
    if type(row_id) is not int or created_at.tzinfo is None:
        raise invalid
    return created_at, row_id


async def list_page(
    session: AsyncSession,
    settings: Settings,
    project_id: uuid.UUID,
    *,
    now: datetime,
    limit: int,
    cursor: str | None = None,
    reason: Reason | None = None,
    q: str | None = None,
) -> SuppressionPage:
    page = await repository.list_page(
        session,
        list_id(settings, project_id),
        now=now,
        limit=limit,
        after=decode_cursor(cursor) if cursor else None,
        reason=reason.value if reason else None,
        q=q,
    )
    last = page.rows[-1] if page.rows else None
    return SuppressionPage(
        data=[item(r) for r in page.rows],
        pagination=SuppressionPagination(
            limit=limit,
            has_more=page.has_more,
            next_cursor=encode_cursor(last.created_at, last.id)
            if page.has_more and last is not None
            else None,
        ),
    )


async def export(
    session: AsyncSession, settings: Settings, project_id: uuid.UUID, now: datetime
) -> AsyncIterator[SuppressionItem]:
    async for row in repository.every_row(session, list_id(settings, project_id), now):
        yield item(row)
