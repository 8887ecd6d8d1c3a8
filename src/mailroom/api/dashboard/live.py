"""Live updates of the emails page: server-sent events, at most one message a second.

Each open page holds one stream. Once a second it asks PostgreSQL (the log is the
source; nothing else is told of changes) for the emails its filters select that are newer
than the newest it has (one keyset query), and for the current state of the emails it
shows that are not final yet (a primary-key lookup); whatever changed goes out in one
``update`` event, as the table rows to insert or replace. The session is re-checked as
often, so a revoked key or an expired session ends the stream (``signout``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from mailroom.api.dashboard.filters import read_filters
from mailroom.api.dashboard.signin import CurrentViewer, Viewer
from mailroom.api.dashboard.web import PREFIX, render_text
from mailroom.api.deps import state_of
from mailroom.auth.scopes import Scope
from mailroom.emails import log
from mailroom.emails.log_query import decode_cursor, encode_cursor
from mailroom.emails.log_repository import Position
from mailroom.emails.schemas.responses import EmailLogItem

router = APIRouter(include_in_schema=False)

TICK = 1.0  # seconds between looks at the log: at most one message a second
KEEPALIVE = 15.0  # seconds between comments that keep proxies from closing an idle stream
NEW_PER_TICK = 20  # newest emails sent in one message (the rest follow a second later)
MAX_TRACKED = 200  # emails of one page whose status is watched


def _ids(value: str | None) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for part in (value or "").split(",")[:MAX_TRACKED]:
        try:
            found.add(uuid.UUID(part))
        except ValueError:
            continue
    return found


def _row(item: EmailLogItem) -> str:
    return render_text("_row.html", e=item)


def _fingerprint(item: EmailLogItem) -> tuple[str, int]:
    return item.status.value, item.attempts


@router.get(PREFIX + "/emails/live")
async def live(request: Request, viewer: CurrentViewer) -> Response:
    filters = read_filters(request.query_params, viewer.session.tz)
    try:
        newest = decode_cursor(request.query_params.get("after", ""))
    except ValueError:
        return Response("after: not a cursor of this page", status_code=400)
    tracked = dict.fromkeys(_ids(request.query_params.get("ids")), ("", -1))
    project = request.query_params.get("project") or None
    stream = _updates(request, viewer, filters.criteria, project, newest, tracked)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _updates(
    request: Request,
    viewer: Viewer,
    criteria: log.Criteria,
    project: str | None,
    newest: Position,
    tracked: dict[uuid.UUID, tuple[str, int]],
) -> AsyncIterator[str]:
    state = state_of(request)
    access = viewer.principal.access
    project = project if viewer.principal.has(Scope.ADMIN) else None
    quiet_since = time.monotonic()
    yield "retry: 3000\n\n"
    while not await request.is_disconnected():
        principal = await state.keys.check_id(viewer.principal.key_id)
        if principal is None or viewer.session.expires_at <= time.time():
            yield "event: signout\ndata: {}\n\n"
            return
        async with state.sessions() as session:
            added = await log.newer(
                session,
                criteria,
                access=access,
                project=project,
                than=newest,
                limit=NEW_PER_TICK,
            )
            watched = {i for i, (status, _) in tracked.items() if status not in _FINAL}
            current = (
                await log.emails_now(session, watched, access=access, project=project)
                if watched
                else []
            )
        changed = []
        for item in current:
            if _fingerprint(item) != tracked.get(item.id):
                changed.append({"id": str(item.id), "html": _row(item)})
                tracked[item.id] = _fingerprint(item)
        for item in added:
            tracked[item.id] = _fingerprint(item)
            newest = Position(item.created_at, item.id)
        while len(tracked) > MAX_TRACKED:
            tracked.pop(next(iter(tracked)))
        if added or changed:
            message = {
                "new": [{"id": str(i.id), "html": _row(i)} for i in added],
                "changed": changed,
                "after": encode_cursor(newest),
            }
            yield f"event: update\ndata: {json.dumps(message)}\n\n"
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(TICK)


_FINAL = {"sent", "failed", "cancelled"}
