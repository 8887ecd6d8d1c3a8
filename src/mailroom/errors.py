"""Mailroom's exception tree. Every error a client can see is one of these, and each
``code`` is defined here once.

    MailroomError                 500 internal_error    (base: a status, a stable code, a message)
    ├── InvalidRequest            422 validation_error  (``details`` lists each field)
    │   └── IdempotencyKeyReused  422 idempotency_key_reused (same key, different body)
    ├── MalformedRequest          400 malformed_request (body is not JSON, ...)
    ├── Unauthorized              401 unauthorized      (no key, unknown or revoked key)
    ├── Forbidden                 403 forbidden         (the key lacks the scope)
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── RequestTimeout            408 request_timeout   (the request arrived too slowly)
    ├── Conflict                  409 conflict          (the email's status does not allow it)
    ├── PayloadTooLarge           413 payload_too_large
    ├── RateLimited               429 rate_limited      (``retry_after`` seconds)
    ├── ServiceUnavailable        503 service_unavailable (a dependency is down)
    │   └── NotReady              503 not_ready         (GET /ready: ``details`` says which)
    └── HttpError                 any http_error        (another HTTP error of the framework)

Each leaves the API in one JSON shape (``body``)::

    {"error": {"code": "...", "message": "...", "details": ...}}

A list of ``details`` holds at most MAX_DETAILS problems (the first ones); when there were
more, ``detailsTotal`` says how many, so one request cannot make a huge answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

MAX_DETAILS = 20
T = TypeVar("T")


def first_details(details: Sequence[T]) -> tuple[list[T], int | None]:
    """The first MAX_DETAILS of ``details``, and their total when some were left out."""
    if len(details) <= MAX_DETAILS:
        return list(details), None
    return list(details[:MAX_DETAILS]), len(details)


class MailroomError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, details: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self._headers = dict(headers) if headers else None

    @property
    def headers(self) -> dict[str, str] | None:
        return self._headers

    def body(self) -> dict[str, Any]:
        """The error as the API answers it."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if isinstance(self.details, list):
            error["details"], total = first_details(self.details)
            if total is not None:
                error["detailsTotal"] = total
        else:
            error["details"] = self.details
        return {"error": error}


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


class RequestTimeout(MailroomError):
    status_code = 408
    code = "request_timeout"


class Conflict(MailroomError):
    status_code = 409
    code = "conflict"


class MethodNotAllowed(MailroomError):
    status_code = 405
    code = "method_not_allowed"


class ServiceUnavailable(MailroomError):
    status_code = 503
    code = "service_unavailable"


class NotReady(ServiceUnavailable):
    code = "not_ready"


class PayloadTooLarge(MailroomError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(MailroomError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retryAfter": retry_after})
        self.retry_after = retry_after


class HttpError(MailroomError):
    """An HTTP error the framework raised that has no class of its own, with its status."""

    code = "http_error"

    def __init__(
        self, status_code: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        self.status_code = status_code


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
