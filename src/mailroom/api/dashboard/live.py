"""Live updates of the emails page: server-sent events, at most one message a second.

Each open page holds one stream, fed by the process's ``LiveHub`` (one look at the log a
second for all of them, see hub). A stream keeps the new emails its filters and project
select and the changes to the emails its page shows, and sends them in one ``update``
event, as the table rows to insert or replace. The session is re-checked at each look, so
a revoked key or an expired session ends the stream (``signout``); whether it was signed out
(a database lookup) every SIGNOUT_CHECK seconds, to keep 50 open pages cheap.
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
from mailroom.api.dashboard.hub import LiveHub
from mailroom.api.dashboard.signin import CurrentViewer, Viewer
from mailroom.api.dashboard.web import PREFIX, render_text
from mailroom.api.deps import state_of
from mailroom.auth.scopes import Scope
from mailroom.auth.signouts import is_ended
from mailroom.emails import log
from mailroom.emails.log_query import decode_cursor, encode_cursor
from mailroom.emails.log_repository import Position
from mailroom.emails.schemas.responses import EmailLogItem

router = APIRouter(include_in_schema=False)

KEEPALIVE = 15.0  # seconds between comments that keep proxies from closing an idle stream
NEW_PER_TICK = 20  # newest emails sent in one message (the rest follow a second later)
MAX_TRACKED = 200  # emails of one page whose status is watched
SIGNOUT_CHECK = 10.0  # seconds between looks at whether the stream's session was signed out


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
    hub: LiveHub = request.app.state.dashboard_hub
    access = viewer.principal.access
    project = project if viewer.principal.has(Scope.ADMIN) else None
    own = None if access.every_project else viewer.principal.project.name
    shown: set[uuid.UUID] = set(tracked)  # rows the page has (never sent twice)
    floor = (newest.created_at, newest.id)  # the page has everything up to here

    def reachable(item: EmailLogItem) -> bool:
        wanted = own or project
        return wanted is None or item.project == wanted

    subscriber = hub.subscribe(state.sessions)
    hub.watch(subscriber, set(tracked))
    try:
        yield "retry: 3000\n\n"
        number = hub.number
        caught_up = False
        quiet_since = signout_checked = time.monotonic()
        while not await request.is_disconnected():
            try:
                tick = await asyncio.wait_for(hub.after(number), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            number = tick.number
            principal = await state.keys.check_id(viewer.principal.key_id)
            ended = principal is None or viewer.session.expires_at <= time.time()
            if not ended and time.monotonic() - signout_checked >= SIGNOUT_CHECK:
                signout_checked = time.monotonic()
                async with state.sessions() as session:
                    ended = await is_ended(session, viewer.session.id)
            if ended:
                yield "event: signout\ndata: {}\n\n"
                return
            added = [
                i
                for i in tick.new
                if (i.created_at, i.id) > floor and reachable(i) and criteria.matches(i)
            ]
            if not caught_up:
                # What was created between the page and the hub's first look at the log.
                async with state.sessions() as session:
                    added = (
                        await log.newer(
                            session,
                            criteria,
                            access=access,
                            project=project,
                            than=newest,
                            limit=NEW_PER_TICK,
                        )
                        + added
                    )
                caught_up = True
            added = [i for i in added if i.id not in shown][-NEW_PER_TICK:]
            changed = []
            for item_id in list(tracked):
                item = tick.current.get(item_id)
                if item is None or not reachable(item):
                    continue
                if _fingerprint(item) != tracked[item_id]:
                    changed.append(item)
            for item in changed:
                tracked[item.id] = _fingerprint(item)
            for item in added:
                tracked[item.id] = _fingerprint(item)
                shown.add(item.id)
                if (item.created_at, item.id) > (newest.created_at, newest.id):
                    newest = Position(item.created_at, item.id)
            while len(tracked) > MAX_TRACKED:
                tracked.pop(next(iter(tracked)))
            hub.watch(subscriber, {i for i, (status, _) in tracked.items() if status not in _FINAL})
            if added or changed:
                message = {
                    "new": [{"id": str(i.id), "html": _row(i)} for i in added],
                    "changed": [{"id": str(i.id), "html": _row(i)} for i in changed],
                    "after": encode_cursor(newest),
                }
                yield f"event: update\ndata: {json.dumps(message)}\n\n"
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE:
                yield ": keepalive\n\n"
                quiet_since = time.monotonic()
    finally:
        hub.unsubscribe(subscriber)


_FINAL = {"sent", "failed", "cancelled"}
