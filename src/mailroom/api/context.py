"""What one request learns about itself (its caller, headers to add), kept in its ASGI scope.

Not in ``request.state``: under some servers that dict is the lifespan state, shared by
every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from mailroom.auth.scopes import Scope as KeyScope
    from mailroom.auth.service import Principal

_KEY = "mailroom.context"


@dataclass
class RequestContext:
    caller: Principal | None = None
    authorized: KeyScope | None = None  # the scope the caller was checked for
    response_headers: dict[str, str] = field(default_factory=dict)
    # Emails this request stored (not replayed): the metrics count them once its 202 has
    # left, which is after the commit.
    emails_accepted: int = 0


def request_context(scope: Scope) -> RequestContext:
    context = scope.get(_KEY)
    if context is None:
        context = scope[_KEY] = RequestContext()
    assert isinstance(context, RequestContext)
    return context


def client_address(scope: Scope) -> str:
    """The client's address: the TCP peer, or the one X-Forwarded-For names when the peer
    is one of TRUSTED_PROXIES (uvicorn's ProxyHeadersMiddleware, mounted by create_app,
    wrote it into the scope)."""
    peer = scope.get("client")
    return str(peer[0]) if peer else "unknown"
