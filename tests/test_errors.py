"""Mailroom's error classes: one code each, one JSON shape."""

from __future__ import annotations

from mailroom import errors
from mailroom.errors import HttpError, MailroomError, RateLimited, Unauthorized


def _classes(base: type[MailroomError]) -> list[type[MailroomError]]:
    found = [base]
    for sub in base.__subclasses__():
        found += _classes(sub)
    return found


def test_each_error_class_has_a_code_of_its_own() -> None:
    classes = _classes(MailroomError)
    assert {c.__module__ for c in classes} == {errors.__name__}
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), codes
    assert all(c.code in (errors.__doc__ or "") for c in classes)


def test_the_body_is_the_one_json_shape() -> None:
    error = errors.NotFound("No email with id x", details={"id": "x"})
    assert (error.status_code, error.headers) == (404, None)
    assert error.body() == {
        "error": {"code": "not_found", "message": "No email with id x", "details": {"id": "x"}}
    }
    limited = RateLimited("Too many requests.", retry_after=3)
    assert (limited.status_code, limited.body()["error"]["details"]) == (429, {"retryAfter": 3})


def test_headers_given_or_fixed_by_the_class() -> None:
    unavailable = errors.ServiceUnavailable("down", headers={"Retry-After": "5"})
    assert unavailable.headers == {"Retry-After": "5"}
    assert Unauthorized("no key").headers == {"WWW-Authenticate": 'Bearer realm="mailroom"'}


def test_an_http_error_keeps_the_status_it_was_raised_with() -> None:
    error = HttpError(418, "I'm a teapot", headers={"X-Why": "tea"})
    assert (error.status_code, error.code, error.headers) == (418, "http_error", {"X-Why": "tea"})
    assert MailroomError.status_code == 500
