"""The dashboard's webhook pages: the project's endpoints, one endpoint's deliveries, and
its actions (send a test event, replay, rotate the secret).

Every page needs ``webhooks:write`` (the scope of the webhook API) and reads or acts
through ``mailroom.webhooks.service`` on the signed-in key's project, like the API.
Every action is a POST carrying the session's CSRF token; rotating asks first.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from mailroom.api.dashboard.signin import CurrentViewer, Viewer, read_action
from mailroom.api.dashboard.web import PREFIX, render
from mailroom.api.deps import Session, State
from mailroom.auth.scopes import Scope
from mailroom.errors import Conflict, InvalidRequest, NotFound
from mailroom.unit_of_work import unit_of_work
from mailroom.webhooks import service
from mailroom.webhooks.schemas.requests import ReplayRequest

router = APIRouter(include_in_schema=False)

BASE = PREFIX + "/webhooks"
DELIVERIES_PAGE = 50
FAILED_REPLAY = 100  # "Replay failed" sends again the events of this many newest failures
# What "Replay" offers: the events of the last hour, day or week.
REPLAY_WINDOWS = {"1": "the last hour", "24": "the last 24 hours", "168": "the last 7 days"}
_NOTICES = {
    "tested": "A test event was sent: its attempt is the newest below.",
    "replayed": "{n} event(s) queued to be sent again.",
}


def _error(viewer: Viewer, status_code: int, title: str, message: str) -> Response:
    return render("error.html", status_code, viewer=viewer, title=title, message=message)


def _no_endpoint(viewer: Viewer) -> Response:
    return _error(viewer, 404, "No such endpoint", "There is no webhook endpoint with that id.")


def _parse(endpoint_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(endpoint_id)
    except ValueError:
        return None


@router.get(BASE)
async def endpoints(viewer: CurrentViewer, session: Session) -> Response:
    viewer.require(Scope.WEBHOOKS_WRITE)
    found = await service.list_endpoints(session, project_id=viewer.principal.project.id)
    return render("webhooks.html", viewer=viewer, endpoints=found.data)


@router.get(BASE + "/{endpoint_id}")
async def endpoint(
    endpoint_id: str, request: Request, viewer: CurrentViewer, session: Session
) -> Response:
    viewer.require(Scope.WEBHOOKS_WRITE)
    target = _parse(endpoint_id)
    if target is None:
        return _no_endpoint(viewer)
    project_id = viewer.principal.project.id
    cursor = request.query_params.get("cursor") or None
    try:
        hook = await service.get(session, target, project_id=project_id)
        page = await service.deliveries(
            session,
            target,
            project_id=project_id,
            cursor=cursor,
            status=None,
            event_type=None,
            limit=DELIVERIES_PAGE,
        )
    except NotFound:
        return _no_endpoint(viewer)
    except InvalidRequest:
        return _error(viewer, 400, "Bad address", "That page of deliveries does not exist.")
    done = request.query_params.get("done", "")
    count = request.query_params.get("n", "")
    notice = _NOTICES.get(done)
    if notice is not None:
        notice = notice.format(n=int(count) if count.isdigit() else 0)
    return render(
        "webhook.html",
        viewer=viewer,
        hook=hook,
        page=page,
        first_page=cursor is None,
        notice=notice,
        windows=REPLAY_WINDOWS,
    )


@router.post(BASE + "/{endpoint_id}/test")
async def send_test(
    endpoint_id: str, request: Request, viewer: CurrentViewer, state: State
) -> Response:
    target = (await read_action(request, viewer, Scope.WEBHOOKS_WRITE, target=endpoint_id)).target
    if target is None:
        return _no_endpoint(viewer)
    try:
        await service.send_test(
            state.sessions,
            target,
            project_id=viewer.principal.project.id,
            settings=state.settings,
        )
    except NotFound:
        return _no_endpoint(viewer)
    except Conflict as exc:
        return _error(viewer, 409, "Not possible now", exc.message)
    return RedirectResponse(f"{BASE}/{target}?done=tested", status_code=303)


@router.post(BASE + "/{endpoint_id}/replay")
async def replay(
    endpoint_id: str, request: Request, viewer: CurrentViewer, state: State
) -> Response:
    action = await read_action(request, viewer, Scope.WEBHOOKS_WRITE, target=endpoint_id)
    form, target = action.form, action.target
    if target is None:
        return _no_endpoint(viewer)
    hours = form.get("hours", "")
    if hours not in REPLAY_WINDOWS:
        return _error(viewer, 400, "Bad request", "Choose how far back to replay.")
    body = ReplayRequest(since=datetime.now(UTC) - timedelta(hours=int(hours)))
    try:
        async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
            done = await service.replay(
                uow.session, target, body, project_id=viewer.principal.project.id
            )
    except NotFound:
        return _no_endpoint(viewer)
    return RedirectResponse(f"{BASE}/{target}?done=replayed&n={done.replayed}", status_code=303)


@router.post(BASE + "/{endpoint_id}/replay-failed")
async def replay_failed(
    endpoint_id: str, request: Request, viewer: CurrentViewer, state: State
) -> Response:
    """The events whose newest deliveries failed for good (the latest FAILED_REPLAY)."""
    target = (await read_action(request, viewer, Scope.WEBHOOKS_WRITE, target=endpoint_id)).target
    if target is None:
        return _no_endpoint(viewer)
    try:
        async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
            done = await service.replay_failed(
                uow.session, target, project_id=viewer.principal.project.id, limit=FAILED_REPLAY
            )
    except NotFound:
        return _no_endpoint(viewer)
    return RedirectResponse(f"{BASE}/{target}?done=replayed&n={done.replayed}", status_code=303)


@router.get(BASE + "/{endpoint_id}/rotate")
async def confirm_rotate(endpoint_id: str, viewer: CurrentViewer, session: Session) -> Response:
    """The confirmation step: rotating cannot be undone, so it is a page of its own."""
    viewer.require(Scope.WEBHOOKS_WRITE)
    target = _parse(endpoint_id)
    if target is None:
        return _no_endpoint(viewer)
    try:
        hook = await service.get(session, target, project_id=viewer.principal.project.id)
    except NotFound:
        return _no_endpoint(viewer)
    return render("webhook_rotate.html", viewer=viewer, hook=hook, secret=None)


@router.post(BASE + "/{endpoint_id}/rotate")
async def rotate(
    endpoint_id: str, request: Request, viewer: CurrentViewer, state: State
) -> Response:
    action = await read_action(request, viewer, Scope.WEBHOOKS_WRITE, target=endpoint_id)
    form, target = action.form, action.target
    if target is None:
        return _no_endpoint(viewer)
    project_id = viewer.principal.project.id
    try:
        async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
            rotated = await service.rotate_secret(
                uow.session,
                target,
                project_id=project_id,
                settings=state.settings,
                expire_old_now=form.get("expire_old_now") == "1",
            )
            hook = await service.get(uow.session, target, project_id=project_id)
    except NotFound:
        return _no_endpoint(viewer)
    # Shown in this answer only (the dashboard's answers are all no-store).
    return render("webhook_rotate.html", viewer=viewer, hook=hook, secret=rotated.secret)
