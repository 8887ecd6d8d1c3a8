"""Property-based API testing with schemathesis over the whole published OpenAPI schema.

The app runs under uvicorn on a free local port, in a thread with its own event loop,
against the session's database and Redis namespace. Every operation is called with a
key holding every scope; no response may be a 5xx, and every response must be
documented (status code, content type, headers) and match its schema.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import HookContext

from mailroom.api.app import create_app
from tests.api.test_injection import PAYLOADS
from tests.conftest import make_settings
from tests.support.live_server import LiveServer, serving


@pytest.fixture(scope="module")
async def live_server(database_url: str, namespace: str) -> AsyncIterator[LiveServer]:
    async with serving(
        make_settings(database_url, namespace, send_rate_limit="1000000/second")
    ) as server:
        yield server


# The schema is the app's own document, built without connecting to anything (create_app
# does not connect until its lifespan starts). schemathesis.pytest.from_fixture would let
# it be loaded from the live server instead, but schemathesis 4.32 sets Node._nodeid,
# which pytest 9 no longer has. test_the_served_schema_is_the_one_tested ties the two.
_DOCUMENT = create_app(
    make_settings("postgresql+asyncpg://schema-only@127.0.0.1:1/none", "schema-only")
).openapi()
schema = schemathesis.openapi.from_dict(copy.deepcopy(_DOCUMENT))

# JSON Schema cannot say what an address is, nor that a subject holds no control
# characters, nor that text or html must be given: generated bodies for POST /send are
# almost never acceptable, so only the 422 path would be tested. For about half of the
# generated objects this hook makes those fields acceptable (any display name, subject and
# body text still come from Hypothesis), so the 202 and what reads the email back are
# tested too. Strings stay strings and lists keep their length; schemathesis revalidates
# a changed body against the schema in any case.
_ADDRESS_FIELDS = frozenset({"to", "cc", "bcc", "from", "replyTo"})
_LINE_SAFE = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\u0085")
_LOCAL_PART = st.from_regex(r"[a-z0-9](?:[a-z0-9._+-]{0,20}[a-z0-9])?", fullmatch=True).filter(
    lambda local: ".." not in local
)
_DISPLAY_NAME = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters='"<>\\\u0085'),
    min_size=1,
    max_size=40,
).filter(str.strip)
_ADDRESS = st.builds(
    "{}@{}".format, _LOCAL_PART, st.sampled_from(["example.com", "mail.example.org"])
)
_MAILBOX = st.one_of(_ADDRESS, st.builds("{} <{}>".format, _DISPLAY_NAME, _ADDRESS))
_SUBJECT = st.text(_LINE_SAFE, min_size=1, max_size=120).filter(str.strip)
_HEADERS = st.dictionaries(
    st.from_regex(r"X-[A-Za-z0-9-]{1,30}", fullmatch=True),
    st.text(_LINE_SAFE, max_size=80),
    max_size=3,
)
# The injection corpus (encoded-words with and without whitespace, direction overrides,
# invisible characters, lone surrogates, ...) spliced into the fields a header is made of:
# each must be a 422 or deliver as given, never a 5xx.
_HOSTILE = st.builds("{}{}".format, _SUBJECT, st.sampled_from(list(PAYLOADS.values())))
_HOSTILE_MAILBOX = st.builds(
    "{}{} <{}>".format, _DISPLAY_NAME, st.sampled_from(list(PAYLOADS.values())), _ADDRESS
)
# Address lists around their bound (50 recipients in to, cc and bcc together).
_MANY = st.lists(_ADDRESS, min_size=45, max_size=55)


@st.composite
def _acceptable(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    body = dict(body)
    hostile = draw(st.integers(0, 9)) == 0  # one body in ten carries a corpus payload
    for name in _ADDRESS_FIELDS.intersection(body):
        value = body[name]
        mailbox = _HOSTILE_MAILBOX if hostile else _MAILBOX
        if isinstance(value, str):
            body[name] = draw(mailbox)
        elif isinstance(value, list):
            body[name] = [draw(mailbox) for _ in value]
    if draw(st.integers(0, 9)) == 0:
        body["to"] = draw(_MANY)
    if "subject" in body:
        body["subject"] = draw(_HOSTILE if hostile else _SUBJECT)
    if "headers" in body:
        headers = draw(_HEADERS)
        if hostile and headers:
            headers = {name: draw(_HOSTILE) for name in headers}
        body["headers"] = headers
    if not isinstance(body.get("text"), str) and not isinstance(body.get("html"), str):
        body["text"] = draw(st.text(min_size=1, max_size=200).filter(lambda t: "\x00" not in t))
    return body


@schema.hook("flatmap_body")
def _mostly_acceptable(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
    if context.operation is None or context.operation.label != "POST /send":
        return st.just(body)
    if not isinstance(body, dict):
        return st.just(body)
    return st.one_of(st.just(body), _acceptable(body))


def test_the_served_schema_is_the_one_tested(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == _DOCUMENT
    assert not any(path.startswith("/dev") for path in _DOCUMENT["paths"])


# Two of schemathesis's checks judge the requests rather than the responses:
# - positive_data_acceptance wants every schema-valid request accepted, but JSON Schema
#   cannot say what an email address is ("to": [""] is a string, so "valid"), nor that
#   `page` and `cursor` exclude each other; those requests get the documented 422.
# - negative_data_rejection wants every schema-invalid request refused, but the hook
#   above, which makes half the bodies deliverable, can repair a generated negative case.
# Neither is a 5xx or a response that breaks the schema; every other check runs.
_NOT_ABOUT_RESPONSES = [
    schemathesis.checks.positive_data_acceptance,
    schemathesis.checks.negative_data_rejection,
]


def _call(case: schemathesis.Case[Any], base_url: str, api_key: str) -> schemathesis.Response:
    return case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
        excluded_checks=_NOT_ABOUT_RESPONSES,
    )


@pytest.mark.usefixtures("clean")
@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases on every run: CI failures reproduce
    database=None,
)
def test_the_api_honours_its_schema(
    case: schemathesis.Case[Any], live_server: LiveServer, api_key: str
) -> None:
    response = _call(case, live_server.base_url, api_key)
    if case.operation.label == "POST /send" and response.status_code == 202:
        # Whatever was accepted must read back as documented, in detail and in the log.
        email_id = response.json()["id"]
        detail = schema["/emails/{email_id}"]["GET"].Case(path_parameters={"email_id": email_id})
        assert _call(detail, live_server.base_url, api_key).status_code == 200
        log = schema["/logs/email"]["GET"].Case(query={"limit": 100})
        assert _call(log, live_server.base_url, api_key).status_code == 200
