"""The dashboard's providers page: each SMTP provider, its limits, its breaker and its
attempts today.

The providers come from the settings as the worker reads them (``provider_configs``,
as ``mailroom providers list`` shows them); the breakers as the workers last published
them (``Dispatcher.provider_breakers``, as /ready reports them); the counts from
PostgreSQL's per-provider counters (``report.providers_today``). No password is shown:
the page names the host, port and user only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from mailroom.api.dashboard.pages import chosen_project, error_page
from mailroom.api.dashboard.signin import CurrentViewer
from mailroom.api.dashboard.web import PREFIX, render
from mailroom.api.deps import Session, State
from mailroom.auth.scopes import Scope
from mailroom.emails import report
from mailroom.errors import Forbidden, NotFound
from mailroom.transport.from_settings import SmtpSetupError, provider_configs

router = APIRouter(include_in_schema=False)
_BREAKERS_TIMEOUT = 2.0


@dataclass(frozen=True)
class ProviderRow:
    name: str
    host: str
    port: int
    security: str
    weight: int
    rate: str
    daily: str
    from_domains: str
    breaker: str
    today: report.ProviderDay


@router.get(PREFIX + "/providers")
async def providers(
    request: Request, viewer: CurrentViewer, session: Session, state: State
) -> Response:
    viewer.require(Scope.LOGS_READ)
    try:
        today = await report.providers_today(
            session,
            access=viewer.principal.access,
            project=chosen_project(request, viewer),
            now=datetime.now(UTC),
        )
    except (Forbidden, NotFound) as exc:
        return error_page(viewer, exc.status_code, "Not available", exc.message)
    try:
        configs = provider_configs(state.settings)
    except SmtpSetupError as exc:
        return render("providers.html", viewer=viewer, rows=[], problem=str(exc), reachable=True)
    try:
        breakers: dict[str, str] | None = await asyncio.wait_for(
            state.dispatcher.provider_breakers(), _BREAKERS_TIMEOUT
        )
    except Exception:  # noqa: BLE001 (Redis away: the page says so, the rest still shows)
        breakers = None
    rows = [
        ProviderRow(
            name=p.name,
            host=p.smtp.host,
            port=p.smtp.port,
            security=str(p.smtp.security),
            weight=p.weight,
            rate=str(p.rate) if p.rate else "unlimited",
            daily=str(p.daily) if p.daily else "unlimited",
            from_domains=", ".join(p.from_domains) or "any",
            breaker=(breakers or {}).get(p.name, "unknown (no worker reported it)"),
            today=today.get(p.name, report.ProviderDay()),
        )
        for p in configs
    ]
    return render(
        "providers.html", viewer=viewer, rows=rows, problem=None, reachable=breakers is not None
    )
