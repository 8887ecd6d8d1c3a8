"""GET /logs/email: the paginated log with today's report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from mailroom.api.deps import Session
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute, LogsReader
from mailroom.emails import log
from mailroom.emails.log_query import LogQuery
from mailroom.emails.schemas.responses import EmailLogPage

router = APIRouter(tags=["logs"], dependencies=[LogsReader], route_class=GuardedRoute)


@router.get(
    "/logs/email",
    response_model=EmailLogPage,
    summary="The email log, newest first, with today's sent/failed report",
    responses={
        **AUTH_RESPONSES,
        422: {"model": ErrorResponse, "description": "A query parameter is invalid"},
    },
)
async def email_log(query: Annotated[LogQuery, Query()], session: Session) -> EmailLogPage:
    """Page with `page` (and `limit`), or follow `pagination.nextCursor` with `cursor`
    (stable and fast at any depth). `summary` counts the emails created today in `tz`."""
    return await log.list_log(session, query, now=datetime.now(UTC))
