"""Mailroom's exception tree. Every error a client can see is one of these.

    MailroomError                 base: an HTTP status, a stable ``code`` and a message
    ├── InvalidRequest            422 validation_error  (``details`` lists each field)
    ├── MalformedRequest          400 malformed_request (body is not JSON, ...)
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed
    └── ServiceUnavailable        503 service_unavailable (a dependency is down)

The API maps each to one JSON shape::

    {"error": {"code": "...", "message": "...", "details": ...}}
"""

from __future__ import annotations

from typing import Any


class MailroomError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(MailroomError):
    status_code = 422
    code = "validation_error"


class MalformedRequest(MailroomError):
    status_code = 400
    code = "malformed_request"


class NotFound(MailroomError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(MailroomError):
    status_code = 405
    code = "method_not_allowed"


class ServiceUnavailable(MailroomError):
    status_code = 503
    code = "service_unavailable"
