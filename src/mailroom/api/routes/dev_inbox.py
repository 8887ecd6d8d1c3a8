"""GET /dev/inbox: what the development SMTP server received (JSON, or HTML for a browser)."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from mailroom.api.deps import InboxDep
from mailroom.api.errors import AUTH_RESPONSES
from mailroom.api.security import GuardedRoute, LogsReader, require
from mailroom.auth.scopes import Scope

# The inbox holds what every project sent: only a key that reaches every project reads it.
router = APIRouter(
    tags=["development"],
    dependencies=[LogsReader, require(Scope.ADMIN)],
    route_class=GuardedRoute,
)


@router.get(
    "/dev/inbox",
    summary="Messages the development inbox received, newest first",
    response_model=None,
    responses=AUTH_RESPONSES,
)
async def dev_inbox(inbox: InboxDep, request: Request, format: str | None = None) -> Response:
    """JSON by default; HTML when a browser asks for it (or with `?format=html`)."""
    messages = [m.summary() for m in inbox]
    wants_html = format == "html" or (
        format is None and "text/html" in request.headers.get("accept", "")
    )
    if wants_html:
        return HTMLResponse(_render(messages))
    return JSONResponse(messages)


def _render(messages: list[dict[str, Any]]) -> str:
    rows = "".join(
        "<details><summary><b>{subject}</b> &mdash; {to} <small>({at})</small></summary>"
        "<p><small>From {sender} &middot; {mid}</small></p>"
        "<pre>{body}</pre>{html}</details>".format(
            subject=html.escape(str(m["subject"] or "(no subject)")),
            to=html.escape(str(m["to"] or "")),
            at=html.escape(str(m["receivedAt"])),
            sender=html.escape(str(m["from"] or "")),
            mid=html.escape(str(m["messageId"] or "")),
            body=html.escape(str(m["text"] or "")),
            # The HTML body is shown sandboxed: no scripts, no navigation.
            html=(
                f'<iframe sandbox srcdoc="{html.escape(str(m["html"]))}" '
                'style="width:100%;height:20em;border:1px solid #ccc"></iframe>'
                if m["html"]
                else ""
            ),
        )
        for m in messages
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Mailroom dev inbox</title>"
        "<meta http-equiv=refresh content=5>"
        "<style>body{font-family:system-ui;max-width:60em;margin:2em auto}"
        "details{border-bottom:1px solid #ddd;padding:.5em 0}</style>"
        f"<h1>Mailroom dev inbox</h1><p>{len(messages)} message(s); refreshes every 5 s.</p>"
        + (rows or "<p>Nothing yet: <code>POST /send</code> something.</p>")
    )
