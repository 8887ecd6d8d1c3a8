"""Rendering the dashboard's pages, serving its static files, and its security headers.

Templates are Jinja2 with autoescaping on for every template, so every value from an
email is text, whatever it contains. Static files are read once, named in pages with a
hash of their content (``?v=``), so a browser may cache them for good. The headers
middleware gives every /dashboard response a strict Content-Security-Policy (scripts
and styles from this origin only: no inline script, no eval), ``X-Frame-Options: DENY``
and ``no-store``, unless the route set its own (the sandboxed email body does).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.datastructures import MutableHeaders
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # the first hex digits of its SHA-256


def _load_assets() -> dict[str, Asset]:
    types = {
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    found: dict[str, Asset] = {}
    for entry in resources.files("mailroom.api.dashboard").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if suffix in types:
            body = entry.read_bytes()
            found[entry.name] = Asset(body, types[suffix], hashlib.sha256(body).hexdigest()[:12])
    return found


ASSETS = _load_assets()


def asset_url(name: str) -> str:
    return f"{PREFIX}/static/{name}?v={ASSETS[name].version}"


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _size(value: int) -> str:
    if value < 1024:
        return f"{value} B"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KB"
    return f"{value / (1024 * 1024):.1f} MB"


templates = Environment(
    loader=PackageLoader("mailroom.api.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    enable_async=False,
)
templates.globals["asset_url"] = asset_url
templates.filters["when"] = _when
templates.filters["size"] = _size


def render_text(template: str, **context: Any) -> str:
    return templates.get_template(template).render(**context)


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render_text(template, **context), status_code=status_code)


class SecurityHeaders:
    """Adds the dashboard's security headers to its responses (a route's own win)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
