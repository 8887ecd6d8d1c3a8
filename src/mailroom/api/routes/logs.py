"""GET /logs/email: the paginated log with today's report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from mailroom.api.callers import LogsCaller
from mailroom.api.deps import Session
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute
from mailroom.emails import log
from mailroom.emails.log_query import LogQuery
from mailroom.emails.schemas.responses import EmailLogPage

router = APIRouter(tags=["logs"], route_class=GuardedRoute)


@router.get(
    "/logs/email",
    response_model=EmailLogPage,
    summary="The email log, newest first, with today's sent/failed report",
    responses={
        **AUTH_RESPONSES,
        403: {
            "model": ErrorResponse,
            "description": "The key lacks `logs:read`, or names another project without `admin`",
        },
        404: {"model": ErrorResponse, "description": "An admin key named no existing project"},
        422: {"model": ErrorResponse, "description": "A query parameter is invalid"},
    },
)
async def email_log(
    query: Annotated[LogQuery, Query()], session: Session, caller: LogsCaller
) -> EmailLogPage:
    """Page with `page` (and `limit`), or follow `pagination.nextCursor` with `cursor`
    (stable and fast at any depth). `summary` counts the emails created today in `tz`.

    Everything here (items, `pagination.total`, `summary`) is the key's project's; a key
    with the `admin` scope sees every project's, or the one `project` names."""
    return await log.list_log(session, query, access=caller.access, now=datetime.now(UTC))
