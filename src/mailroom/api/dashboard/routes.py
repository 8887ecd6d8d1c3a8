"""Mounting the dashboard on the API's app: its routes, static files, headers, redirects."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import PlainTextResponse, Response

from mailroom.api.dashboard import live, pages, provider_pages, signin, suppressions, webhook_pages
from mailroom.api.dashboard.hub import LiveHub
from mailroom.api.dashboard.session import Signers
from mailroom.api.dashboard.signin import NotAllowed, SignInRequired, to_sign_in
from mailroom.api.dashboard.web import ASSETS, PREFIX, SecurityHeaders, render
from mailroom.settings import Settings

static = APIRouter(include_in_schema=False)


@static.get(PREFIX + "/static/{name}")
async def asset(name: str, request: Request) -> Response:
    found = ASSETS.get(name)
    if found is None:
        return PlainTextResponse("Not found", status_code=404)
    # Named by content in every page (?v=), so a browser may keep it for good.
    versioned = request.query_params.get("v") == found.version
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return Response(
        found.body,
        media_type=found.content_type,
        headers={"Cache-Control": cache, "ETag": f'"{found.version}"'},
    )


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    if request.headers.get("accept", "").startswith("text/event-stream"):
        return PlainTextResponse("Sign in again", status_code=401)
    return to_sign_in(exc.wanted)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAllowed)
    return render("error.html", 403, viewer=None, title="Not allowed", message=exc.message)


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    app.state.dashboard_signers = Signers(settings)
    app.state.dashboard_hub = LiveHub()
    app.include_router(static)
    app.include_router(signin.router)
    app.include_router(live.router)  # before pages: /emails/live is not an email's id
    app.include_router(suppressions.router)  # before pages: its catch-all 404
    app.include_router(webhook_pages.router)  # before pages: its catch-all 404 comes last
    app.include_router(provider_pages.router)
    app.include_router(pages.router)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(NotAllowed, _not_allowed)
    app.add_middleware(SecurityHeaders)
