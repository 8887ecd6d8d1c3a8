"""The dashboard's pages: overview, the log, one email (with its body and actions), keys.

Each route reads through the same use cases as the API (``log``, ``report``,
``operations``, ``auth.service``), with the signed-in key's ``ProjectAccess``; an admin
key may look at one project with ``?project=``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from mailroom.api.dashboard.chart import bar_chart
from mailroom.api.dashboard.filters import PAGE_SIZE, read_filters
from mailroom.api.dashboard.signin import CurrentViewer, Viewer, read_action, valid_zone
from mailroom.api.dashboard.web import PREFIX, render
from mailroom.api.deps import Session, State
from mailroom.auth.scopes import Scope
from mailroom.auth.service import list_keys
from mailroom.emails import log, operations, report
from mailroom.emails.log_query import encode_cursor
from mailroom.emails.log_repository import Position
from mailroom.emails.states import CANCEL, RETRY, EmailStatus
from mailroom.errors import Conflict, Forbidden, NotFound
from mailroom.metrics.collectors import job_counts
from mailroom.unit_of_work import unit_of_work

router = APIRouter(include_in_schema=False)


def error_page(viewer: Viewer | None, status_code: int, title: str, message: str) -> Response:
    return render("error.html", status_code, viewer=viewer, title=title, message=message)


def chosen_project(request: Request, viewer: Viewer) -> str | None:
    """The project an admin asked for (others always see their own)."""
    wanted = request.query_params.get("project") or None
    return wanted if viewer.can(Scope.ADMIN) else None


@router.get(PREFIX)
async def overview(
    request: Request, viewer: CurrentViewer, session: Session, state: State
) -> Response:
    tz = valid_zone(request.query_params.get("tz") or viewer.session.tz)
    chart_range = request.query_params.get("range", "24h")
    if chart_range not in report.RANGES:
        chart_range = "24h"
    try:
        found = await report.overview(
            session,
            access=viewer.principal.access,
            project=chosen_project(request, viewer),
            tz=tz,
            chart_range=chart_range,
            now=datetime.now(UTC),
            takeover=timedelta(seconds=state.settings.worker_takeover_after),
        )
    except (Forbidden, NotFound) as exc:
        return error_page(viewer, exc.status_code, "Not available", exc.message)
    try:
        jobs: dict[str, int] | None = await job_counts(state.dispatcher.queue)
    except Exception:  # noqa: BLE001 (Redis away: the page shows it, the rest still works)
        jobs = None
    unit = "hour" if chart_range == "24h" else "day"
    return render(
        "overview.html",
        viewer=viewer,
        data=found,
        jobs=jobs,
        tz=tz,
        chart=bar_chart(found.points, unit=unit),
        ranges=list(report.RANGES),
        project=chosen_project(request, viewer),
    )


@router.get(PREFIX + "/emails")
async def emails(request: Request, viewer: CurrentViewer, session: Session) -> Response:
    filters = read_filters(request.query_params, viewer.session.tz)
    try:
        page = await log.browse(
            session,
            filters.criteria,
            access=viewer.principal.access,
            project=chosen_project(request, viewer),
            after=filters.after,
            limit=PAGE_SIZE,
        )
    except (Forbidden, NotFound) as exc:
        return error_page(viewer, exc.status_code, "Not available", exc.message)
    # The live view starts after the newest email shown (only on the first page).
    first = page.items[0] if page.items else None
    live_from = (
        encode_cursor(Position(first.created_at, first.id))
        if first is not None
        else encode_cursor(Position(datetime(2000, 1, 1, tzinfo=UTC), uuid.UUID(int=0)))
    )
    return render(
        "emails.html",
        viewer=viewer,
        page=page,
        filters=filters,
        statuses=[s.value for s in EmailStatus],
        live=filters.after is None,
        live_from=live_from,
        tz=viewer.session.tz,
    )


@router.get(PREFIX + "/emails/{email_id}")
async def email(
    email_id: str, request: Request, viewer: CurrentViewer, session: Session
) -> Response:
    try:
        detail = await log.get_email(session, uuid.UUID(email_id), access=viewer.principal.access)
    except (ValueError, NotFound):
        return error_page(viewer, 404, "No such email", "There is no email with that id.")
    return render(
        "email.html",
        viewer=viewer,
        email=detail,
        tz=viewer.session.tz,
        can_retry=viewer.can(Scope.EMAILS_WRITE) and detail.status in RETRY.sources,
        can_cancel=viewer.can(Scope.EMAILS_WRITE) and detail.status in CANCEL.sources,
        notice=request.query_params.get("done"),
    )


# The email's HTML in its own document: a sandbox with no scripts, no forms, no origin,
# no fetches, and images (remote ones only when asked for) as its only subresources.
_BODY_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:{images}; "
    "font-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


@router.get(PREFIX + "/emails/{email_id}/body")
async def email_body(
    email_id: str, request: Request, viewer: CurrentViewer, session: Session
) -> Response:
    try:
        detail = await log.get_email(session, uuid.UUID(email_id), access=viewer.principal.access)
    except (ValueError, NotFound):
        return error_page(viewer, 404, "No such email", "There is no email with that id.")
    images = " https: http:" if request.query_params.get("images") == "1" else ""
    return Response(
        detail.html or "",
        media_type="text/html",
        headers={
            "Content-Security-Policy": _BODY_CSP.format(images=images),
            "X-Frame-Options": "SAMEORIGIN",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _act(
    request: Request, viewer: Viewer, state: State, email_id: str, verb: str
) -> Response:
    target = (await read_action(request, viewer, Scope.EMAILS_WRITE, target=email_id)).target
    if target is None:
        return error_page(viewer, 404, "No such email", "There is no email with that id.")
    action = operations.retry_email if verb == "retry" else operations.cancel_email
    try:
        async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
            await action(uow, target, access=viewer.principal.access)
    except NotFound:
        return error_page(viewer, 404, "No such email", "There is no email with that id.")
    except Conflict as exc:
        return error_page(viewer, 409, "Not possible now", exc.message)
    done = "retried" if verb == "retry" else "cancelled"
    return RedirectResponse(f"{PREFIX}/emails/{target}?done={done}", status_code=303)


@router.post(PREFIX + "/emails/{email_id}/retry")
async def retry(email_id: str, request: Request, viewer: CurrentViewer, state: State) -> Response:
    return await _act(request, viewer, state, email_id, "retry")


@router.post(PREFIX + "/emails/{email_id}/cancel")
async def cancel(email_id: str, request: Request, viewer: CurrentViewer, state: State) -> Response:
    return await _act(request, viewer, state, email_id, "cancel")


@router.get(PREFIX + "/keys")
async def keys(viewer: CurrentViewer, session: Session) -> Response:
    own = viewer.principal.project.name
    rows = await list_keys(session, project=None if viewer.can(Scope.ADMIN) else own)
    return render("keys.html", viewer=viewer, keys=rows, tz=viewer.session.tz)


@router.get(PREFIX + "/{unknown:path}")
async def unknown_page(unknown: str, viewer: CurrentViewer) -> Response:
    """Any other address under /dashboard: the 404 page (after sign-in, like every page)."""
    return error_page(viewer, 404, "No such page", "There is no dashboard page at that address.")
