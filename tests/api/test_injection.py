"""Header injection: a corpus of payloads in every field that ends up in a message header.

Each payload goes into each header-bound field of POST /send. It must be refused with a
422 that names the field, unless it is harmless text in a field that holds free text
(the literal "%0d%0a..." in a subject, a header value or a display name; an invisible
character in a header value) or a file name, which is cleaned rather than refused (control
and format characters removed): those may be accepted, and then the delivered message, in
every part, must carry no header and reach no recipient that neither Mailroom nor the
request put there. An encoded-word is refused everywhere, with or without whitespace inside.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.headerregistry import AddressHeader
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

PAYLOADS = {
    "crlf-bcc": "\r\nBcc: victim@evil.example",
    "percent-encoded-crlf": "%0d%0aBcc: victim@evil.example",  # literal text, not a CRLF
    "lf-header": "\nX-Injected: 1",
    "nul": "\x00",
    "line-separator": "\u2028X-Injected: 1",
    "next-line": "\u0085",
    "ansi-escape": "\x1b[31m",
    "100k-chars": "x" * 100_000,
    "encoded-word": "=?utf-8?q?x=0D=0ABcc:=20victim@evil.example?=",
    "encoded-word-with-space": "=?utf-8?q?x=0D=0ABcc:=20victim@evil.example=0D=0A=0D=0Apay ?=",
    "encoded-word-base64": "=?UTF-8?B?eA0KWC1JbmplY3RlZDogMQ==?=",
    "encoded-word-spaced-charset": "=?utf-8 ?Q?x=0AX-Injected:=201 ?=",
    "bidi-override": "\u202egnp.exe",
    "zero-width-space": "Pay\u200bPal",
    "lone-surrogate": "\ud800",
    # Long enough that CPython's folder splits a quoted display name out of its quotes.
    "fold-out-of-quotes": "x" * 30 + ",;Bcc:victim@evil.example" + "x" * 30,
}
HARMLESS = frozenset({"percent-encoded-crlf", "fold-out-of-quotes"})
# Sent as escaped JSON ("\\ud800"): a lone surrogate has no UTF-8 form of its own.
JSON = {"Content-Type": "application/json"}
# Text that only deceives a reader: refused in subjects and display names, where a person
# reads it as who wrote and what about; allowed in other header values.
INVISIBLE = frozenset({"bidi-override", "zero-width-space"})
ENCODED_WORDS = frozenset(p for p in PAYLOADS if p.startswith("encoded-word"))

ADDRESS_FIELDS = ("to", "cc", "bcc", "from", "replyTo")
ENVELOPE_FIELDS = ("to", "cc", "bcc")
BASE: dict[str, Any] = {
    "to": "jane@example.com",
    "subject": "Hello",
    "text": "Hi there",
    "headers": {"X-Campaign": "injection-corpus"},
}


def _field_address(field: str) -> str:
    return f"{field.lower()}@example.com"


@dataclass(frozen=True)
class Case:
    """One payload in one field: the request body, and the field a 422 must name."""

    target: str  # "to", "to (display name)", "subject", "header name", ...
    payload_id: str
    body: dict[str, Any]
    field: str  # as the error's details name it (a list field: "to[0]")
    recipients: frozenset[str] = frozenset({"jane@example.com"})  # the SMTP envelope asked for

    @property
    def free_text(self) -> bool:
        """Whether the field holds arbitrary text, so harmless text may be accepted."""
        return self.target in {"subject", "header value"} or self.target.endswith("display name)")

    @property
    def may_be_accepted(self) -> bool:
        if self.target == "attachment filename":  # cleaned, not refused; never an encoded-word
            return self.payload_id not in ENCODED_WORDS
        if self.target == "header value" and self.payload_id in INVISIBLE:
            return True
        return self.free_text and self.payload_id in HARMLESS


def _error_field(name: str) -> str:
    return name if name == "from" else f"{name}[0]"


def _recipients(name: str, address: str) -> frozenset[str]:
    if name == "to":
        return frozenset({address})
    if name in ENVELOPE_FIELDS:
        return frozenset({"jane@example.com", address})
    return frozenset({"jane@example.com"})


def _cases() -> list[Case]:
    cases: list[Case] = []
    for payload_id, payload in PAYLOADS.items():
        for name in ADDRESS_FIELDS:
            address = _field_address(name)
            cases.append(
                Case(name, payload_id, {**BASE, name: f"{address}{payload}"}, _error_field(name))
            )
            cases.append(
                Case(
                    f"{name} (display name)",
                    payload_id,
                    {**BASE, name: f"Name{payload} <{address}>"},
                    _error_field(name),
                    _recipients(name, address),
                )
            )
        cases.append(Case("subject", payload_id, {**BASE, "subject": f"Hello{payload}"}, "subject"))
        cases.append(
            Case(
                "header name", payload_id, {**BASE, "headers": {f"X-Test{payload}": "1"}}, "headers"
            )
        )
        cases.append(
            Case(
                "header value",
                payload_id,
                {**BASE, "headers": {"X-Test": f"value{payload}"}},
                "headers",
            )
        )
        cases.append(
            Case(
                "attachment filename",
                payload_id,
                {**BASE, "attachments": [{"filename": f"report{payload}.txt", "content": "aGk="}]},
                "attachments[0].filename",
            )
        )
        cases.append(
            Case(
                "attachment content id",
                payload_id,
                {
                    **BASE,
                    "html": '<img src="cid:logo">',
                    "attachments": [
                        {"filename": "logo.png", "content": "aGk=", "contentId": f"logo{payload}"}
                    ],
                },
                "attachments[0].contentId",
            )
        )
    return cases


CASES = _cases()
REFUSED = [pytest.param(c, id=f"{c.target}-{c.payload_id}") for c in CASES if not c.may_be_accepted]
MAYBE_ACCEPTED = [c for c in CASES if c.may_be_accepted]


def _names_the_field(response: httpx.Response, field: str) -> bool:
    error = response.json()["error"]
    if error["code"] != "validation_error":
        return False
    named = [item["field"] for item in error["details"]]
    return any(name == field or name.startswith((f"{field}[", f"{field}.")) for name in named)


async def _stored(client: httpx.AsyncClient) -> int:
    response = await client.get("/logs/email")
    assert response.status_code == 200, response.text
    total: int = response.json()["pagination"]["total"]
    return total


@pytest.mark.parametrize("case", REFUSED)
async def test_the_payload_is_refused_naming_the_field(
    client: httpx.AsyncClient, case: Case
) -> None:
    response = await client.post("/send", content=json.dumps(case.body), headers=JSON)
    assert response.status_code == 422, response.text[:500]
    assert _names_the_field(response, case.field), response.text[:500]
    assert len(response.content) < 4096  # the error does not echo a huge payload back
    assert await _stored(client) == 0


# -- what is accepted is delivered without anything injected ---------------------------

# Headers a delivered message may carry: Mailroom's own, and those the corpus requests set.
MAILROOM_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
REQUEST_HEADERS = frozenset({"x-campaign", "x-test"})
# Headers a MIME part may carry (an attachment's).
PART_HEADERS = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "mime-version",
    }
)
INJECTED_LINE = re.compile(rb"^(?:bcc|x-injected)[ \t]*:", re.IGNORECASE | re.MULTILINE)


async def _status(client: httpx.AsyncClient, email_id: str) -> str:
    response = await client.get(f"/emails/{email_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def test_accepted_payloads_are_delivered_without_injected_headers_or_recipients(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    assert MAYBE_ACCEPTED  # the corpus has harmless text in free-text fields
    accepted: dict[str, tuple[Case, str]] = {}  # Message-ID -> (case, email id)
    for case in MAYBE_ACCEPTED:
        response = await client.post("/send", content=json.dumps(case.body), headers=JSON)
        if response.status_code == 422 and _names_the_field(response, case.field):
            continue  # refusing harmless text is allowed, if strict
        assert response.status_code == 202, f"{case.target}: {response.text[:500]}"
        body = response.json()
        accepted[body["messageId"]] = (case, body["id"])
    assert accepted, "every harmless payload was refused: nothing left to deliver"

    async with running_worker(settings, smtp_server):

        async def statuses() -> dict[str, str]:
            return {email_id: await _status(client, email_id) for _, email_id in accepted.values()}

        final = await eventually(
            statuses,
            lambda found: set(found.values()) <= {"sent", "failed"},
            what="every accepted email delivered",
        )
    assert set(final.values()) == {"sent"}, final

    received = smtp_server.handler.messages()
    assert len(received) == len(accepted)
    for captured in received:
        message = captured.parsed()
        case, _ = accepted[str(message["Message-ID"])]
        where = f"{case.target} / {case.payload_id}"

        # No recipient beyond those asked for; in particular never victim@evil.example.
        assert set(captured.envelope_to) == case.recipients, where
        assert not any("evil.example" in r.lower() for r in captured.envelope_to), where

        # No header beyond Mailroom's own and those the request set, and none twice.
        names = [name.lower() for name in message]
        assert set(names) <= MAILROOM_HEADERS | REQUEST_HEADERS, (where, names)
        assert len(names) == len(set(names)), (where, names)
        head, _, rest = captured.raw.partition(b"\r\n\r\n")
        assert INJECTED_LINE.search(head) is None, where
        for part in message.walk():
            if part is not message:
                part_names = [name.lower() for name in part]
                assert set(part_names) <= PART_HEADERS, (where, part_names)
        # Only the attachment's name is free text below the top headers: no line it
        # holds may start a header.
        assert INJECTED_LINE.search(rest) is None, where

        # Address headers hold exactly the addresses given: a display name stays a name.
        for header in ("From", "To", "Cc", "Reply-To"):
            value = message[header]
            if value is None:
                continue
            assert isinstance(value, AddressHeader), (where, header)
            found = {address.addr_spec for address in value.addresses}
            assert not any("evil.example" in address for address in found), (where, header)
            assert len(found) == 1, (where, header, found)
