"""GET /health (the process is up) and GET /ready (its dependencies are reachable)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from mailroom.api.deps import State
from mailroom.api.errors import ErrorResponse, error_response
from mailroom.errors import NotReady

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT = 2.0


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: PostgreSQL and Redis are reachable",
    responses={
        503: {"model": ErrorResponse, "description": "A dependency is down; details say which"}
    },
)
async def ready(state: State) -> JSONResponse:
    async def database() -> None:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks = {"database": database, "redis": state.dispatcher.ping}
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), _CHECK_TIMEOUT) for check in checks.values()),
        return_exceptions=True,
    )
    report = {
        name: "ok" if result is None else f"down: {type(result).__name__}"
        for name, result in zip(checks, results, strict=True)
    }
    down = [name for name, value in report.items() if value != "ok"]
    if down:
        return error_response(NotReady(f"Not ready: {', '.join(down)} unreachable", details=report))
    body: dict[str, object] = {"status": "ready", "checks": report}
    # Reported, never a reason to be unready: the worker fails over between providers.
    with contextlib.suppress(Exception):
        breakers = await asyncio.wait_for(state.dispatcher.provider_breakers(), _CHECK_TIMEOUT)
        if breakers:
            body["providers"] = {name: {"breaker": value} for name, value in breakers.items()}
    return JSONResponse(body)
