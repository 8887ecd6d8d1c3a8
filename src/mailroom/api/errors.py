"""Every error leaves the API in one JSON shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from mailroom.errors import (
    MAX_DETAILS,
    HttpError,
    InvalidRequest,
    MailroomError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    field_errors,
)

log = structlog.get_logger(__name__)

DATABASE_RETRY_AFTER = 5  # seconds


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = Field(
        default=None, description=f"For a list of problems: the first {MAX_DETAILS} of them"
    )
    detailsTotal: int | None = Field(  # the JSON name, as the other keys
        default=None, description=f"How many problems there were, when over {MAX_DETAILS}"
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key"},
    403: {"model": ErrorResponse, "description": "The key lacks the scope this endpoint needs"},
}


def error_response(error: MailroomError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(MalformedRequest("The request body is not valid JSON."))
    details = field_errors(errors)
    first = details[0] if details else {"field": "request", "message": "is invalid"}
    summary = f"{first['field']}: {first['message']}"
    if len(details) > 1:
        summary += f" (and {len(details) - 1} more)"
    return error_response(InvalidRequest(f"Invalid request. {summary}", details=details))


async def _mailroom(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailroomError)
    return error_response(exc)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error: MailroomError
    if exc.status_code == 404:
        error = NotFound("No such endpoint.", headers=exc.headers)
    elif exc.status_code == 405:
        headers = {**(exc.headers or {}), "Allow": _allowed_methods(request)}
        error = MethodNotAllowed("Method not allowed on this endpoint.", headers=headers)
    elif exc.status_code == 413:  # the body passed its limit while it was read
        error = PayloadTooLarge(str(exc.detail))
    else:
        error = HttpError(exc.status_code, str(exc.detail), headers=exc.headers)
    return error_response(error)


def _allowed_methods(request: Request) -> str:
    """Every method served at the path the request reached (the first route whose template
    matches, as routing chose it): Starlette names only one route's methods when several
    share a template (GET and POST /suppressions are two routes)."""
    routes = list(_routes(request.app.router.routes))
    template = next((r.path for r in routes if r.matches(request.scope)[0] is not Match.NONE), None)
    methods = {m for r in routes if r.path == template for m in r.methods or ()}
    return ", ".join(sorted(methods))


def _routes(routes: Iterable[Any]) -> Iterator[Route]:
    """The app's routes, those of included routers too (FastAPI keeps an included router
    as one entry that holds the original)."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    if (
        isinstance(exc, DBAPIError)
        and not isinstance(exc, (OperationalError, InterfaceError))
        and not exc.connection_invalidated
    ):
        return await _unexpected(request, exc)
    log.error("database.unavailable", error=type(exc).__name__)
    return error_response(
        ServiceUnavailable(
            "The database is unavailable; nothing was stored. Try again shortly.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed", method=request.method, path=request.url.path)
    return error_response(MailroomError("Internal server error."))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(MailroomError, _mailroom)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DBAPIError, _database_down)
    app.add_exception_handler(ConnectionRefusedError, _database_down)
    app.add_exception_handler(Exception, _unexpected)
