"""Who is calling: bearer API keys, scopes, and rate limits, checked from the headers alone.

Every route that needs a key is a ``GuardedRoute``: it authenticates, checks the scope and
counts the request against its rate limit before FastAPI reads a byte of the body, so a
caller without a valid key gets its ``401`` (or ``403``, ``429``) at once, whatever it is
still sending, and the server never buffers or parses a stranger's body. A failed
authentication counts against the client IP's budget on every route.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, params
from fastapi.dependencies.models import Dependant
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
_SCOPE = "mailroom_scope"  # the attribute naming the scope a dependency requires


async def authenticate(request: Request, scope: Scope) -> Principal:
    """The caller, if its key holds ``scope``; raises 401, 403 or 429 otherwise.

    Per client IP when the key is missing, unknown or revoked; per key on POST /send and
    /send/batch. Runs once per request: a second call returns the caller found.
    """
    context = request_context(request.scope)
    if context.caller is not None and context.authorized == scope:
        return context.caller
    state = state_of(request)
    credentials = await _bearer(request)
    try:
        if credentials is None:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        principal = await state.keys.check(credentials.credentials)
        if principal is None:
            raise Unauthorized("Unknown or revoked API key.")
    except Unauthorized:
        await _limit(request, state, f"ip:{client_address(request.scope)}", None)
        raise
    context.caller = principal
    if scope is Scope.SEND:
        await _limit(request, state, f"key:{principal.key_id}", principal.rate_limit)
    if not principal.has(scope):
        raise Forbidden(f"This API key lacks the '{scope.value}' scope.")
    context.authorized = scope
    return principal


def require(scope: Scope) -> params.Depends:
    """A dependency that admits keys holding ``scope`` (and declares the bearer scheme)."""

    async def dependency(request: Request, credentials: Credentials) -> Principal:
        # GuardedRoute has normally authenticated already; this returns what it found.
        return await authenticate(request, scope)

    setattr(dependency, _SCOPE, scope)
    marker: params.Depends = Depends(dependency)
    return marker


def _required_scope(dependant: Dependant) -> Scope | None:
    for dependency in dependant.dependencies:
        scope: Scope | None = getattr(dependency.call, _SCOPE, None) or _required_scope(dependency)
        if scope is not None:
            return scope
    return None


class GuardedRoute(APIRoute):
    """A route that authenticates (and rate-limits) before FastAPI reads the body.

    Otherwise FastAPI reads and parses the body first (its dependencies run after), and a
    stranger could make the server buffer and parse bodies without limit.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope = _required_scope(self.dependant)
        if scope is None:
            return handler

        async def guarded(request: Request) -> Response:
            await authenticate(request, scope)
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


SendCaller = Annotated[Principal, require(Scope.SEND)]
LogsReader = require(Scope.LOGS_READ)
EmailsWriter = require(Scope.EMAILS_WRITE)
MetricsReader = require(Scope.METRICS_READ)
SuppressionsWriter = require(Scope.SUPPRESSIONS_WRITE)
WebhooksWriter = require(Scope.WEBHOOKS_WRITE)
