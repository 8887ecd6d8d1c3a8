"""Mailroom's exception tree. Every error a client can see is one of these.

    MailroomError                 base: an HTTP status, a stable ``code`` and a message
    ├── InvalidRequest            422 validation_error  (``details`` lists each field)
    │   └── IdempotencyKeyReused  422 idempotency_key_reused (same key, different body)
    ├── MalformedRequest          400 malformed_request (body is not JSON, ...)
    ├── Unauthorized              401 unauthorized      (no key, unknown or revoked key)
    ├── Forbidden                 403 forbidden         (the key lacks the scope)
    ├── NotFound                  404 not_found
    ├── Conflict                  409 conflict          (the email's status does not allow it)
    ├── MethodNotAllowed          405 method_not_allowed
    ├── PayloadTooLarge           413 payload_too_large
    ├── RateLimited               429 rate_limited      (``retry_after`` seconds)
    └── ServiceUnavailable        503 service_unavailable (a dependency is down)

The API maps each to one JSON shape::

    {"error": {"code": "...", "message": "...", "details": ...}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class MailroomError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str] | None:
        return None


class InvalidRequest(MailroomError):
    status_code = 422
    code = "validation_error"


class IdempotencyKeyReused(InvalidRequest):
    code = "idempotency_key_reused"


class MalformedRequest(MailroomError):
    status_code = 400
    code = "malformed_request"


class Unauthorized(MailroomError):
    status_code = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": 'Bearer realm="mailroom"'}  # RFC 9110: a 401 names its scheme


class Forbidden(MailroomError):
    status_code = 403
    code = "forbidden"


class NotFound(MailroomError):
    status_code = 404
    code = "not_found"


class Conflict(MailroomError):
    status_code = 409
    code = "conflict"


class MethodNotAllowed(MailroomError):
    status_code = 405
    code = "method_not_allowed"


class ServiceUnavailable(MailroomError):
    status_code = 503
    code = "service_unavailable"


class PayloadTooLarge(MailroomError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(MailroomError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retryAfter": retry_after})
        self.retry_after = retry_after


def field_errors(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> list[dict[str, str]]:
    """pydantic's errors as ``details``: [{"field": "to[1]", "message": "…"}]."""
    return [
        {"field": _field(tuple(e.get("loc", ())), prefix), "message": _message(e)} for e in errors
    ]


def _field(loc: tuple[int | str, ...], prefix: str) -> str:
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    name = prefix
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or (str(loc[0]) if loc else "request")


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
