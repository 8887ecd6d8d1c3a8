"""The suppression list as sending sees it: which of a request's recipients it leaves out.

Read once per request (once per batch), through the list's unique index, before the
email is built: its ``suppressed_recipients`` are left out of the envelope, and an email
with none left is stored ``suppressed``. ``ignoreSuppressions`` skips the check for a key
with the suppressions:write scope.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.addresses import parse_mailbox
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.errors import Forbidden
from mailroom.settings import Settings
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
