"""The dashboard's Suppressions page: the list, searched and filtered, and (for a key with
``suppressions:write``) adding and removing addresses.

Everything goes through ``suppressions.service``, the same use cases as GET/POST/DELETE
/suppressions, so the page and the API cannot disagree about what an address or a list is.
The list is the key's project's (an admin may pick another with ``?project=``), or the one
every project shares under SUPPRESSION_SCOPE=global.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from mailroom.api.dashboard.signin import CurrentViewer, Viewer, read_action
from mailroom.api.dashboard.web import PREFIX, render
from mailroom.api.deps import SettingsDep, State
from mailroom.auth.scopes import Scope
from mailroom.errors import InvalidRequest, NotFound
from mailroom.projects.access import ProjectRef
from mailroom.projects.service import find_project
from mailroom.settings import Settings
from mailroom.suppressions import service
from mailroom.suppressions.models import Reason
from mailroom.suppressions.schemas import MAX_ADDRESSES, AddSuppressions, SuppressionPage
from mailroom.unit_of_work import unit_of_work

router = APIRouter(include_in_schema=False)

PATH = PREFIX + "/suppressions"
PAGE_SIZE = 50
MAX_QUERY = 320  # as GET /suppressions' q
# Up to the API's 1000 addresses of ordinary length, pasted one per line.
MAX_ADD_FORM_BYTES = 128 * 1024
_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass
class Listing:
    """What the page was asked for (kept in the URL), and what was wrong with it."""

    q: str = ""
    reason: str = ""
    cursor: str = ""
    project: str = ""
    error: str | None = None

    def query(self, *, cursor: str | None) -> str:
        values = {"q": self.q, "reason": self.reason, "project": self.project}
        values["cursor"] = cursor or ""
        return urlencode({k: v for k, v in values.items() if v})


async def _owner(state: State, viewer: Viewer, name: str) -> ProjectRef:
    """Whose list: the project an admin picked, else the key's own."""
    if not name or not viewer.can(Scope.ADMIN):
        return viewer.principal.project
    async with state.sessions() as db:
        found = await find_project(db, name)
    if found is None:
        raise NotFound(f"There is no project named {name[:80]!r}.")
    return ProjectRef(found.id, found.name)


async def _page(
    state: State,
    settings: Settings,
    viewer: Viewer,
    listing: Listing,
    *,
    status_code: int = 200,
    notice: str | None = None,
    typed: str = "",
    form_error: str | None = None,
) -> Response:
    try:
        owner = await _owner(state, viewer, listing.project)
    except NotFound as exc:
        return render("error.html", 404, viewer=viewer, title="Not available", message=exc.message)
    reason: Reason | None = None
    if listing.reason:
        try:
            reason = Reason(listing.reason)
        except ValueError:
            listing.error = "Reason: pick one from the list."
    if len(listing.q) > MAX_QUERY:
        listing.error = f"Search: at most {MAX_QUERY} characters."
    page = SuppressionPage.model_validate(
        {"data": [], "pagination": {"limit": PAGE_SIZE, "hasMore": False, "nextCursor": None}}
    )
    if listing.error is None:
        try:
            async with state.sessions() as db:
                page = await service.list_page(
                    db,
                    settings,
                    owner.id,
                    now=datetime.now(UTC),
                    limit=PAGE_SIZE,
                    cursor=listing.cursor or None,
                    reason=reason,
                    q=listing.q or None,
                )
        except InvalidRequest:
            listing.error = "That page link is out of date: start from the newest."
    return render(
        "suppressions.html",
        status_code,
        viewer=viewer,
        page=page,
        listing=listing,
        reasons=[r.value for r in Reason],
        owner=owner.name,
        shared=settings.suppression_scope == "global",
        can_write=viewer.can(Scope.SUPPRESSIONS_WRITE),
        notice=notice,
        typed=typed,
        form_error=form_error,
    )


@router.get(PATH)
async def suppressions(
    request: Request, viewer: CurrentViewer, state: State, settings: SettingsDep
) -> Response:
    params = request.query_params
    listing = Listing(
        q=(params.get("q") or "").strip(),
        reason=params.get("reason") or "",
        cursor=params.get("cursor") or "",
        project=params.get("project") or "",
    )
    done = params.get("done")
    notice = {
        "added": f"{params.get('n', '0')[:7]} address(es) added to the list.",
        "removed": "The address was taken off the list.",
    }.get(done or "")
    return await _page(state, settings, viewer, listing, notice=notice)


def _problem(exc: ValidationError) -> str:
    """The first thing wrong with the addresses typed, in words."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "too_long":
        return f"At most {MAX_ADDRESSES} addresses at once."
    if first["type"] == "too_short":
        return "Type at least one address."
    return message if message.startswith("addresses") else f"{where}: {message}"


def _back(project: str, **extra: str) -> RedirectResponse:
    query = urlencode({k: v for k, v in {"project": project, **extra}.items() if v})
    return RedirectResponse(f"{PATH}?{query}", status_code=303)


@router.post(PATH)
async def add(
    request: Request, viewer: CurrentViewer, state: State, settings: SettingsDep
) -> Response:
    action = await read_action(
        request, viewer, Scope.SUPPRESSIONS_WRITE, max_bytes=MAX_ADD_FORM_BYTES
    )
    form = action.form
    project = form.get("project", "")
    typed = form.get("addresses", "")
    addresses = [a for a in _SEPARATORS.split(typed) if a]
    try:
        wanted = AddSuppressions(addresses=addresses, reason="manual")
    except ValidationError as exc:
        listing = Listing(project=project)
        return await _page(
            state, settings, viewer, listing, status_code=422, typed=typed, form_error=_problem(exc)
        )
    try:
        owner = await _owner(state, viewer, project)
    except NotFound as exc:
        return render("error.html", 404, viewer=viewer, title="Not available", message=exc.message)
    async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
        added = await service.add_manual(uow.session, settings, owner.id, wanted, datetime.now(UTC))
    return _back(project, done="added", n=str(added.added))


@router.post(PATH + "/remove")
async def remove(
    request: Request, viewer: CurrentViewer, state: State, settings: SettingsDep
) -> Response:
    form = (await read_action(request, viewer, Scope.SUPPRESSIONS_WRITE)).form
    project = form.get("project", "")
    try:
        owner = await _owner(state, viewer, project)
        async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
            await service.remove(uow.session, settings, owner.id, form.get("address", ""))
    except NotFound as exc:
        return render(
            "error.html", 404, viewer=viewer, title="Not on the list", message=exc.message
        )
    return _back(project, done="removed")
