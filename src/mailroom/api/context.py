"""What one request learns about itself (its caller, headers to add), kept in its ASGI scope.

Not in ``request.state``: under some servers that dict is the lifespan state, shared by
every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from mailroom.auth.service import Principal

_KEY = "mailroom.context"


@dataclass
class RequestContext:
    caller: Principal | None = None
    send_checked: bool = False
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
