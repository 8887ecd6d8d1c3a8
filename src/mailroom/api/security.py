"""Who is calling: bearer API keys, scopes, and the rate limit on POST /send."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, params
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mailroom.api.context import client_address, request_context
from mailroom.api.deps import State, state_of
from mailroom.auth.scopes import Scope
from mailroom.auth.service import Principal
from mailroom.errors import Forbidden, RateLimited, Unauthorized

# auto_error=False: a missing key is reported in Mailroom's own error shape.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer mr_…`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _principal(request: Request, state: State, credentials: Credentials) -> Principal:
    if credentials is None:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    principal = await state.keys.check(credentials.credentials)
    if principal is None:
        raise Unauthorized("Unknown or revoked API key.")
    request_context(request.scope).caller = principal
    return principal


def require(scope: Scope) -> params.Depends:
    """A dependency that admits keys holding ``scope``."""

    async def dependency(
        principal: Annotated[Principal, Depends(_principal)],
    ) -> Principal:
        if not principal.has(scope):
            raise Forbidden(f"This API key lacks the '{scope.value}' scope.")
        return principal

    marker: params.Depends = Depends(dependency)
    return marker


async def authenticate_send(request: Request) -> Principal:
    """Authenticate and rate-limit a POST /send: per key, or per client IP if the key fails."""
    context = request_context(request.scope)
    if context.send_checked and context.caller is not None:
        return context.caller
    state = state_of(request)
    credentials = await _bearer(request)
    try:
        principal = await _principal(request, state, credentials)
    except Unauthorized:
        await _limit(request, state, f"ip:{client_address(request.scope)}", None)
        raise
    await _limit(request, state, f"key:{principal.key_id}", principal.rate_limit)
    if not principal.has(Scope.SEND):
        raise Forbidden(f"This API key lacks the '{Scope.SEND.value}' scope.")
    context.send_checked = True
    return principal


async def _send_caller(request: Request, credentials: Credentials) -> Principal:
    # Normally GuardedRoute has run this before the body was read; this declares the
    # bearer scheme in the OpenAPI document and covers a route without GuardedRoute.
    return await authenticate_send(request)


class GuardedRoute(APIRoute):
    """A route that authenticates (and rate-limits) before FastAPI reads the body.

    Otherwise a body that is not JSON would be refused before the key is checked, and
    strangers could make the server read and parse bodies without limit.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            await authenticate_send(request)
            return await handler(request)

        return guarded


async def _limit(request: Request, state: State, identity: str, limit: str | None) -> None:
    result = await state.rate_limiter.hit(identity, limit)
    if result is None:
        return
    request_context(request.scope).response_headers.update(result.headers())
    if not result.allowed:
        raise RateLimited(
            f"Too many requests: the limit is {result.limit} per {result.window} s. "
            f"Retry after {max(1, result.reset_in)} s.",
            retry_after=max(1, result.reset_in),
        )


SendCaller = Annotated[Principal, Depends(_send_caller)]
LogsReader = require(Scope.LOGS_READ)
EmailsWriter = require(Scope.EMAILS_WRITE)
