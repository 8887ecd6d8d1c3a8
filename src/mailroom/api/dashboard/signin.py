"""Signing in and out of the dashboard, and who is looking at each page.

``Viewer`` is the dependency of every page: the session cookie, checked for its signature
and expiry, then its key looked up again (``KeyChecker.check_id``), so revoking a key
ends its sessions within API_KEY_CACHE_SECONDS, and the session's id is looked up among the
signed-out ones (``auth.signouts``: one primary-key lookup). Without a valid session a page
redirects to the sign-in form, which brings the user back to the page afterwards.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from mailroom.api.context import client_address
from mailroom.api.dashboard.nav import NAV, NavItem
from mailroom.api.dashboard.session import COOKIE, DashboardSession, SessionSigner, Signers
from mailroom.api.dashboard.web import PREFIX, render
from mailroom.api.deps import state_of
from mailroom.auth.scopes import Scope
from mailroom.auth.service import Principal
from mailroom.auth.signouts import end_session, is_ended
from mailroom.projects.service import list_projects

log = structlog.get_logger(__name__)

LOGIN_COOKIE = "mailroom_dashboard_login"  # the sign-in form's own CSRF token
MAX_FORM_BYTES = 8192
router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """No valid session: go to the sign-in form, then back to ``wanted``."""

    def __init__(self, wanted: str) -> None:
        self.wanted = wanted


class NotAllowed(Exception):
    """The session's key lacks what the page needs: a 403 page (or a refused CSRF token)."""

    def __init__(self, message: str) -> None:
        self.message = message


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    session: DashboardSession
    nav: list[NavItem] = field(default_factory=list)
    # For a key with `admin` (which may look at any project): every project's name.
    projects: list[str] = field(default_factory=list)
    path: str = PREFIX  # the page being shown (where the project switcher goes)
    project: str | None = None  # the project an admin picked (?project=), else None

    def can(self, scope: Scope) -> bool:
        return self.principal.has(scope)

    def require(self, scope: Scope) -> None:
        if not self.can(scope):
            raise NotAllowed(f"This API key lacks the '{scope.value}' scope.")

    def check_csrf(self, presented: str | None) -> None:
        if not self.session.csrf_matches(presented):
            raise NotAllowed(
                "The form's security token is missing or out of date: reload the page."
            )


async def signer_of(request: Request) -> SessionSigner:
    signers: Signers = request.app.state.dashboard_signers
    return await signers.get(state_of(request).sessions)


def wanted_page(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def current_viewer(request: Request) -> Viewer:
    session = (await signer_of(request)).read(request.cookies.get(COOKIE))
    principal = None
    if session is not None:
        principal = await state_of(request).keys.check_id(session.key_id)
    if session is None or principal is None or not principal.has(Scope.LOGS_READ):
        raise SignInRequired(wanted_page(request))
    projects: list[str] = []
    async with state_of(request).sessions() as db:
        if await is_ended(db, session.id):
            raise SignInRequired(wanted_page(request))
        if principal.has(Scope.ADMIN):
            projects = [p.name for p in await list_projects(db)]
    return Viewer(
        principal,
        session,
        [item for item in NAV if principal.has(item.scope)],
        projects,
        request.url.path,
        (request.query_params.get("project") or None) if projects else None,
    )


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


def safe_next(value: str | None) -> str:
    """Only a dashboard page of this site: nothing else to redirect to after signing in."""
    if not value or not value.startswith(PREFIX) or "\\" in value:
        return PREFIX
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or not (parts.path == PREFIX or parts.path.startswith(PREFIX + "/"))
    ):
        return PREFIX
    return value


def valid_zone(value: str | None) -> str:
    if not value or len(value) > 64:
        return "UTC"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "UTC"
    return value


async def read_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each); at most ``max_bytes``."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise NotAllowed("That form is too large.")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


@dataclass(frozen=True)
class Action:
    """A state-changing form that passed its checks: its fields, and the id in its path."""

    form: dict[str, str]
    target: uuid.UUID | None  # None: no id asked for, or not a valid one (a 404)


async def read_action(
    request: Request,
    viewer: Viewer,
    scope: Scope | None,
    *,
    target: str | None = None,
    max_bytes: int = MAX_FORM_BYTES,
) -> Action:
    """Every POST's first steps: the form read, its CSRF token checked, then ``scope``
    required of the key (403 pages otherwise), and the path's id ``target`` parsed."""
    form = await read_form(request, max_bytes)
    viewer.check_csrf(form.get("csrf"))
    if scope is not None:
        viewer.require(scope)
    try:
        return Action(form, uuid.UUID(target) if target is not None else None)
    except ValueError:
        return Action(form, None)


def _login_form(
    request: Request, *, wanted: str, error: str | None = None, status_code: int = 200
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        "login.html", status_code, wanted=wanted, error=error, csrf=token, viewer=None
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(PREFIX + "/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return _login_form(request, wanted=safe_next(next))


@router.post(PREFIX + "/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    wanted = safe_next(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _login_form(
            request,
            wanted=wanted,
            status_code=403,
            error="The form was out of date: sign in again.",
        )
    state = state_of(request)
    principal = await state.keys.check(form.get("key", "").strip())
    if principal is None:
        limited = await state.rate_limiter.hit(f"ip:{client_address(request.scope)}", None)
        log.info("dashboard.sign_in_refused")
        if limited is not None and not limited.allowed:
            response = _login_form(
                request,
                wanted=wanted,
                status_code=429,
                error=f"Too many attempts: try again in {max(1, limited.reset_in)} s.",
            )
            response.headers["Retry-After"] = str(max(1, limited.reset_in))
            return response
        return _login_form(request, wanted=wanted, status_code=401, error="That key is not valid")
    if not principal.has(Scope.LOGS_READ):
        return _login_form(
            request,
            wanted=wanted,
            status_code=403,
            error="That key lacks the 'logs:read' scope the dashboard needs.",
        )
    signer = await signer_of(request)
    _, cookie = signer.new(principal.key_id, valid_zone(form.get("tz")))
    response = RedirectResponse(wanted, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=signer.lifetime,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    log.info("dashboard.signed_in", key_id=str(principal.key_id))
    return response


@router.post(PREFIX + "/logout")
async def logout(request: Request, viewer: CurrentViewer) -> Response:
    await read_action(request, viewer, None)
    async with state_of(request).sessions() as db:
        await end_session(
            db,
            viewer.session.id,
            datetime.fromtimestamp(viewer.session.expires_at, UTC),
            now=datetime.now(UTC),
        )
        await db.commit()
    response = RedirectResponse(PREFIX + "/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    log.info("dashboard.signed_out", key_id=str(viewer.principal.key_id))
    return response


def to_sign_in(wanted: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/login?next={quote(wanted, safe='')}", status_code=303)
