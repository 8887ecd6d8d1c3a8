"""The suppression list as sending sees it: which of a request's recipients it leaves out.

Read in the transaction that stores the email (once per POST /send group commit, once per
batch), through the list's unique index: the email's ``suppressed_recipients`` are left
out of its envelope, and an email with none left is stored ``suppressed``.
``ignoreSuppressions`` skips the check for a key with the suppressions:write scope.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.addresses import parse_mailbox
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.errors import Forbidden
from mailroom.settings import Settings
from mailroom.suppressions import repository
from mailroom.suppressions import service as suppressions

IGNORE_FORBIDDEN = '"ignoreSuppressions": true needs an API key with the suppressions:write scope.'


def check_may_ignore(request: SendEmailRequest, *, allowed: bool) -> None:
    if request.ignore_suppressions and not allowed:
        raise Forbidden(IGNORE_FORBIDDEN)


def _bare(request: SendEmailRequest) -> list[str]:
    return [parse_mailbox(a).address for a in (*request.to, *request.cc, *request.bcc)]


async def suppressed(
    session: AsyncSession,
    settings: Settings,
    project_id: uuid.UUID,
    requests: Sequence[SendEmailRequest],
    now: datetime,
) -> set[str]:
    """The suppressed ones among these requests' recipients: one indexed query."""
    wanted = [a for r in requests if not r.ignore_suppressions for a in _bare(r)]
    if not wanted:
        return set()
    return await suppressions.suppressed(session, settings, project_id, wanted, now)


def suppressed_of(request: SendEmailRequest, found: set[str]) -> list[str]:
    if request.ignore_suppressions or not found:
        return []
    return sorted({k for k in suppressions.keys(_bare(request)) if k in found})


@dataclass(frozen=True)
class Check:
    """What POST /send's group commit looks up for one email: its list and recipients' keys."""

    list_id: uuid.UUID
    keys: tuple[str, ...]


def check_for(request: SendEmailRequest, settings: Settings, project_id: uuid.UUID) -> Check | None:
    if request.ignore_suppressions:
        return None
    return Check(
        suppressions.list_id(settings, project_id), tuple(suppressions.keys(_bare(request)))
    )


async def found_in_group(
    session: AsyncSession, checks: Sequence[Check | None], now: datetime
) -> dict[uuid.UUID, set[str]]:
    """The suppressed keys of a group's emails, by list: one indexed query per list (a
    group is normally one project's, so one query for the whole group)."""
    wanted: dict[uuid.UUID, set[str]] = {}
    for check in checks:
        if check is not None:
            wanted.setdefault(check.list_id, set()).update(check.keys)
    return {
        list_id: await repository.suppressed_among(session, list_id, sorted(keys), now)
        for list_id, keys in wanted.items()
    }


def of_check(check: Check | None, found: dict[uuid.UUID, set[str]]) -> list[str]:
    if check is None:
        return []
    listed = found.get(check.list_id, set())
    return sorted({k for k in check.keys if k in listed})
