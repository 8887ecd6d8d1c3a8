"""POST /send through the real app: what is accepted, what is stored, what is refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from tests.api.shapes import DETAIL_KEYS, assert_error
from tests.support.api_calls import email_detail

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


def _without(*keys: str, **changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in VALID.items() if k not in keys}
    body.update(changes)
    return body


def _addresses(count: int, prefix: str) -> list[str]:
    return [f"{prefix}{n}@example.com" for n in range(count)]


async def _accepted(client: httpx.AsyncClient, body: Any) -> dict[str, Any]:
    response = await client.post("/send", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def _fields(response: httpx.Response) -> list[str]:
    error = assert_error(response, 422, "validation_error")
    details = error["details"]
    assert isinstance(details, list) and details
    for item in details:
        assert set(item) == {"field", "message"}
        assert isinstance(item["message"], str) and item["message"]
    assert error["message"].startswith("Invalid request. ")
    return [item["field"] for item in details]


async def _stored_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/logs/email")
    assert response.status_code == 200, response.text
    total: int = response.json()["pagination"]["total"]
    return total


# -- accepted --------------------------------------------------------------------------


async def test_send_returns_202_with_the_queued_email(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    response = await client.post("/send", json=VALID)
    after = datetime.now(UTC)

    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"id", "status", "messageId", "createdAt", "suppressed"}
    assert body["suppressed"] == []
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert body["status"] == "queued"
    # The Message-ID domain comes from MAIL_FROM (sender@example.com) when none is set.
    assert body["messageId"].startswith("<") and body["messageId"].endswith("@example.com>")
    created_at = datetime.fromisoformat(body["createdAt"])
    assert created_at.tzinfo is not None
    assert before <= created_at <= after


async def test_the_accepted_email_is_stored_queued_with_everything_given(
    client: httpx.AsyncClient,
) -> None:
    accepted = await _accepted(
        client,
        {
            "to": ["jane@example.com", "Carl Cook <carl@example.com>"],
            "cc": "copy@example.com",
            "bcc": ["hidden@example.com"],
            "subject": "Your receipt",
            "text": "Thanks for your order.",
            "html": "<p>Thanks for your order.</p>",
            "headers": {"X-Campaign": "receipts", "List-Unsubscribe": "<mailto:u@example.com>"},
        },
    )

    detail = await email_detail(client, accepted["id"])
    assert set(detail) == DETAIL_KEYS
    assert detail == {
        **detail,
        "id": accepted["id"],
        "from": "Mailroom Tests <sender@example.com>",
        "to": ["jane@example.com", "Carl Cook <carl@example.com>"],
        "cc": ["copy@example.com"],
        "bcc": ["hidden@example.com"],
        "replyTo": [],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
        "html": "<p>Thanks for your order.</p>",
        "headers": {"X-Campaign": "receipts", "List-Unsubscribe": "<mailto:u@example.com>"},
        "status": "queued",
        "attempts": 0,
        "messageId": accepted["messageId"],
        "createdAt": accepted["createdAt"],
        "sentAt": None,
        "failedAt": None,
        "error": None,
        "deliveryAttempts": [],
        "recipients": [
            {"address": a, "status": "pending", "code": None, "enhancedCode": None, "message": None}
            for a in (
                "jane@example.com",
                "carl@example.com",
                "copy@example.com",
                "hidden@example.com",
            )
        ],
    }
    assert detail["nextAttemptAt"] is not None


async def test_from_defaults_to_mail_from(client: httpx.AsyncClient, settings: Settings) -> None:
    accepted = await _accepted(client, VALID)
    detail = await email_detail(client, accepted["id"])
    assert detail["from"] == settings.mail_from
    assert detail["from"] == "Mailroom Tests <sender@example.com>"


async def test_from_overrides_mail_from_and_names_the_message_id_domain(
    client: httpx.AsyncClient,
) -> None:
    accepted = await _accepted(client, _with(**{"from": "Acme <no-reply@acme.example.org>"}))
    assert accepted["messageId"].endswith("@acme.example.org>")
    detail = await email_detail(client, accepted["id"])
    assert detail["from"] == "Acme <no-reply@acme.example.org>"


@pytest.mark.parametrize(
    ("to", "stored"),
    [
        pytest.param("jane@example.com", ["jane@example.com"], id="one-string"),
        pytest.param(["jane@example.com"], ["jane@example.com"], id="list-of-one"),
        pytest.param(
            ["jane@example.com", "carl@example.com"],
            ["jane@example.com", "carl@example.com"],
            id="list-of-two-in-order",
        ),
        pytest.param("Jane Doe <jane@example.com>", ["Jane Doe <jane@example.com>"], id="named"),
        pytest.param("  jane@example.com  ", ["jane@example.com"], id="surrounding-space"),
        pytest.param("Jane@EXAMPLE.com", ["Jane@example.com"], id="domain-lower-cased"),
        pytest.param(
            '"Doe, Jane" <jane@example.com>', ['"Doe, Jane" <jane@example.com>'], id="quoted-name"
        ),
        pytest.param(
            "Doe, Jane <jane@example.com>", ['"Doe, Jane" <jane@example.com>'], id="name-quoted"
        ),
        pytest.param("jane@bücher.example", ["jane@xn--bcher-kva.example"], id="idn-punycode"),
    ],
)
async def test_to_is_stored_normalised(
    client: httpx.AsyncClient, to: str | list[str], stored: list[str]
) -> None:
    accepted = await _accepted(client, _with(to=to))
    detail = await email_detail(client, accepted["id"])
    assert detail["to"] == stored


async def test_reply_to_in_camel_case_is_stored(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(
        client, _with(replyTo=["Support <help@example.com>", "desk@example.com"])
    )
    detail = await email_detail(client, accepted["id"])
    assert detail["replyTo"] == ["Support <help@example.com>", "desk@example.com"]


async def test_reply_to_as_one_string(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(client, _with(replyTo="help@example.com"))
    detail = await email_detail(client, accepted["id"])
    assert detail["replyTo"] == ["help@example.com"]


async def test_html_alone_is_a_body(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(client, _without("text", html="<b>Hi</b>"))
    detail = await email_detail(client, accepted["id"])
    assert (detail["text"], detail["html"]) == (None, "<b>Hi</b>")


async def test_the_request_id_is_stored_with_the_email(client: httpx.AsyncClient) -> None:
    response = await client.post("/send", json=VALID, headers={"X-Request-ID": "req-send-42"})
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == "req-send-42"
    detail = await email_detail(client, response.json()["id"])
    assert detail["requestId"] == "req-send-42"


async def test_exactly_50_recipients_across_to_cc_bcc_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    body = _with(to=_addresses(20, "to"), cc=_addresses(20, "cc"), bcc=_addresses(10, "bcc"))
    accepted = await _accepted(client, body)
    detail = await email_detail(client, accepted["id"])
    assert len(detail["to"]) + len(detail["cc"]) + len(detail["bcc"]) == 50


async def test_a_subject_of_998_characters_is_accepted(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(client, _with(subject="s" * 998))
    detail = await email_detail(client, accepted["id"])
    assert detail["subject"] == "s" * 998


async def test_a_non_ascii_subject_is_kept_as_given(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(client, _with(subject="Grüße, ☃ 你好"))
    detail = await email_detail(client, accepted["id"])
    assert detail["subject"] == "Grüße, ☃ 你好"


async def test_each_send_is_a_new_email(client: httpx.AsyncClient) -> None:
    first = await _accepted(client, VALID)
    second = await _accepted(client, VALID)
    assert first["id"] != second["id"]
    assert first["messageId"] != second["messageId"]
    assert await _stored_count(client) == 2


# -- refused -----------------------------------------------------------------------------

INVALID: list[Any] = [
    # to
    pytest.param(_without("to"), "to", id="to-missing"),
    pytest.param(_with(to=[]), "to", id="to-empty-list"),
    pytest.param(_with(to=None), "to", id="to-null"),
    pytest.param(_with(to=""), "to[0]", id="to-empty-string"),
    pytest.param(_with(to="not-an-address"), "to[0]", id="to-invalid"),
    pytest.param(_with(to="jane@"), "to[0]", id="to-no-domain"),
    pytest.param(_with(to=["ok@example.com", "bad"]), "to[1]", id="to-second-invalid"),
    pytest.param(_with(to="a@example.com, b@example.com"), "to[0]", id="to-comma-list"),
    pytest.param(_with(to="Jane <jane@example.com"), "to[0]", id="to-unclosed-angle"),
    pytest.param(
        _with(to="jane@example.com\r\nBcc: evil@example.com"), "to[0]", id="to-crlf-injection"
    ),
    pytest.param(_with(to="jane@example.com\nBcc: evil@example.com"), "to[0]", id="to-lf"),
    pytest.param(_with(to="jane@example.com\r"), "to[0]", id="to-cr"),
    pytest.param(_with(to="jane\x00@example.com"), "to[0]", id="to-nul"),
    pytest.param(
        _with(to="Jane\nBcc: evil@example.com <jane@example.com>"),
        "to[0]",
        id="display-name-newline",
    ),
    pytest.param(
        _with(to='"Jane\r\nBcc: evil@example.com" <jane@example.com>'),
        "to[0]",
        id="quoted-display-name-crlf",
    ),
    pytest.param(_with(to="Jane\u2028Doe <jane@example.com>"), "to[0]", id="display-name-u2028"),
    pytest.param(_with(to=5), "to", id="to-number"),
    pytest.param(_with(to=[5]), "to[0]", id="to-list-of-number"),
    pytest.param(_with(to={"address": "jane@example.com"}), "to", id="to-object"),
    # cc, bcc, from, replyTo
    pytest.param(_with(cc=["bad"]), "cc[0]", id="cc-invalid"),
    pytest.param(_with(cc="x@example.com\r\nBcc: e@example.com"), "cc[0]", id="cc-crlf"),
    pytest.param(_with(bcc=["ok@example.com", "bad"]), "bcc[1]", id="bcc-invalid"),
    pytest.param(_with(**{"from": "bad"}), "from", id="from-invalid"),
    pytest.param(
        _with(**{"from": "Evil\r\nBcc: e@example.com <x@example.com>"}), "from", id="from-crlf"
    ),
    pytest.param(_with(**{"from": ["a@example.com"]}), "from", id="from-list"),
    pytest.param(_with(replyTo="bad"), "replyTo[0]", id="reply-to-invalid"),
    # recipient limit
    pytest.param(_with(to=_addresses(51, "to")), "body", id="51-to"),
    pytest.param(
        _with(to=_addresses(20, "to"), cc=_addresses(20, "cc"), bcc=_addresses(11, "bcc")),
        "body",
        id="51-across-to-cc-bcc",
    ),
    # subject
    pytest.param(_without("subject"), "subject", id="subject-missing"),
    pytest.param(_with(subject=None), "subject", id="subject-null"),
    pytest.param(_with(subject=""), "subject", id="subject-empty"),
    pytest.param(_with(subject="   "), "subject", id="subject-blank"),
    pytest.param(_with(subject="\u00a0"), "subject", id="subject-nbsp-only"),
    pytest.param(_with(subject="Hi\r\nBcc: evil@example.com"), "subject", id="subject-crlf"),
    pytest.param(_with(subject="Hi\nthere"), "subject", id="subject-lf"),
    pytest.param(_with(subject="Hi\rthere"), "subject", id="subject-cr"),
    pytest.param(_with(subject="Hi\x00there"), "subject", id="subject-nul"),
    pytest.param(_with(subject="Hi\tthere"), "subject", id="subject-tab"),
    pytest.param(_with(subject="Hi\u2028there"), "subject", id="subject-u2028"),
    pytest.param(_with(subject="Hi\u2029there"), "subject", id="subject-u2029"),
    pytest.param(_with(subject="Hi\u0085there"), "subject", id="subject-nel"),
    pytest.param(_with(subject="s" * 999), "subject", id="subject-999-chars"),
    pytest.param(_with(subject=123), "subject", id="subject-number"),
    pytest.param(_with(subject=["Hello"]), "subject", id="subject-list"),
    # bodies
    pytest.param(_without("text"), "body", id="no-text-no-html"),
    pytest.param(_with(text=None, html=None), "body", id="text-and-html-null"),
    pytest.param(_with(text="Hi\x00there"), "text", id="text-nul"),
    pytest.param(_without("text", html="<p>\x00</p>"), "html", id="html-nul"),
    pytest.param(_with(text=5), "text", id="text-number"),
    # headers
    pytest.param(_with(headers={"From": "evil@example.com"}), "headers", id="header-From"),
    pytest.param(_with(headers={"to": "evil@example.com"}), "headers", id="header-to"),
    pytest.param(_with(headers={"SUBJECT": "forged"}), "headers", id="header-SUBJECT"),
    pytest.param(_with(headers={"Message-ID": "<x@example.com>"}), "headers", id="header-msgid"),
    pytest.param(_with(headers={"message-id": "<x@example.com>"}), "headers", id="header-msgid-lc"),
    pytest.param(_with(headers={"Bcc": "evil@example.com"}), "headers", id="header-Bcc"),
    pytest.param(_with(headers={"bCc": "evil@example.com"}), "headers", id="header-bCc"),
    pytest.param(_with(headers={"Cc": "evil@example.com"}), "headers", id="header-Cc"),
    pytest.param(_with(headers={"Reply-To": "evil@example.com"}), "headers", id="header-reply-to"),
    pytest.param(_with(headers={"Sender": "evil@example.com"}), "headers", id="header-sender"),
    pytest.param(_with(headers={"Date": "yesterday"}), "headers", id="header-date"),
    pytest.param(_with(headers={"Content-Type": "text/html"}), "headers", id="header-ctype"),
    pytest.param(_with(headers={"content-type": "text/html"}), "headers", id="header-ctype-lc"),
    pytest.param(_with(headers={"Content-Transfer-Encoding": "8bit"}), "headers", id="header-cte"),
    pytest.param(_with(headers={"MIME-Version": "1.0"}), "headers", id="header-mime-version"),
    pytest.param(_with(headers={"Return-Path": "<e@example.com>"}), "headers", id="header-rpath"),
    pytest.param(_with(headers={"Received": "from x"}), "headers", id="header-received"),
    # headers only a receiving or signing system may write
    *(
        pytest.param(_with(headers={name: "v"}), "headers", id=f"header-{name}")
        for name in (
            "DKIM-Signature",
            "DomainKey-Signature",
            "ARC-Seal",
            "ARC-Message-Signature",
            "arc-authentication-results",
            "Authentication-Results",
            "Received-SPF",
            "Delivered-To",
            "Envelope-To",
            "X-Original-To",
            "Resent-From",
            "Resent-To",
            "resent-message-id",
            "Return-Receipt-To",
            "Disposition-Notification-To",
            "Errors-To",
        )
    ),
    pytest.param(_with(headers={"X-Note=?utf-8?q?x?=": "v"}), "headers", id="header-name-ew"),
    pytest.param(_with(headers={"X-Evil": "=?utf-8?q?a b?="}), "headers", id="header-value-ew"),
    pytest.param(_with(subject="Hi =?utf-8?q?x y?="), "subject", id="subject-encoded-word"),
    pytest.param(_with(subject="Pay\u202eLaP"), "subject", id="subject-bidi-override"),
    pytest.param(_with(subject="Pay\u200bPal"), "subject", id="subject-zero-width"),
    pytest.param(_with(to="l" * 65 + "@example.com"), "to[0]", id="to-local-part-65-octets"),
    pytest.param(_with(headers={"X-Evil:Bcc": "v"}), "headers", id="header-name-colon"),
    pytest.param(_with(headers={"X-Evil:": "v"}), "headers", id="header-name-trailing-colon"),
    pytest.param(_with(headers={"X Evil": "v"}), "headers", id="header-name-space"),
    pytest.param(_with(headers={"X-Ünicode": "v"}), "headers", id="header-name-non-ascii"),
    pytest.param(_with(headers={"X-Evil\r\nBcc": "v"}), "headers", id="header-name-crlf"),
    pytest.param(_with(headers={"": "v"}), "headers", id="header-name-empty"),
    pytest.param(_with(headers={"X-" + "a" * 75: "v"}), "headers", id="header-name-77-chars"),
    pytest.param(
        _with(headers={"X-Evil": "v\r\nBcc: evil@example.com"}), "headers", id="header-value-crlf"
    ),
    pytest.param(
        _with(headers={"X-Evil": "v\nBcc: e@example.com"}), "headers", id="header-value-lf"
    ),
    pytest.param(_with(headers={"X-Evil": "v\x00"}), "headers", id="header-value-nul"),
    pytest.param(_with(headers={"X-Evil": "v\u2028w"}), "headers", id="header-value-u2028"),
    pytest.param(_with(headers={"X-Long": "v" * 999}), "headers", id="header-value-999-chars"),
    pytest.param(_with(headers={"X-A": "1", "x-a": "2"}), "headers", id="header-duplicate"),
    pytest.param(_with(headers={f"X-H{n}": "v" for n in range(51)}), "headers", id="51-headers"),
    pytest.param(_with(headers={"X-Count": 5}), "headers.X-Count", id="header-value-number"),
    pytest.param(_with(headers=["X-A: 1"]), "headers", id="headers-list"),
    # unknown fields
    pytest.param(_with(subjet="typo"), "subjet", id="unknown-subjet"),
    pytest.param(_with(attachment=[]), "attachment", id="unknown-attachment"),
    pytest.param(
        _with(attachments=[{"filename": "a.txt", "content": "aGk=", "size": 2}]),
        "attachments[0].size",
        id="unknown-attachment-field",
    ),
    # not an object at all
    pytest.param([VALID], "body", id="json-array"),
    pytest.param(None, "body", id="json-null"),
    pytest.param("jane@example.com", "body", id="json-string"),
    pytest.param(42, "body", id="json-number"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
async def test_an_invalid_request_is_422_naming_the_field(
    client: httpx.AsyncClient, body: Any, field: str
) -> None:
    response = await client.post("/send", json=body)
    assert _fields(response) == [field]
    assert await _stored_count(client) == 0


async def test_every_invalid_field_is_listed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/send", json={"to": "bad", "cc": ["also-bad"], "subject": "", "text": "t"}
    )
    assert sorted(_fields(response)) == ["cc[0]", "subject", "to[0]"]
    assert response.json()["error"]["message"].endswith("(and 2 more)")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{bad json", id="garbage"),
        pytest.param(b'{"to": "jane@example.com",', id="truncated"),
        pytest.param(b'{"to": "jane@example.com",}', id="trailing-comma"),
        pytest.param(b"{'to': 'jane@example.com'}", id="single-quotes"),
    ],
)
async def test_malformed_json_is_400_malformed_request(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post("/send", content=raw, headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, "malformed_request")
    assert error["details"] is None
    assert await _stored_count(client) == 0


async def test_an_empty_body_is_a_4xx_jsonassert_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/send", content=b"", headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    code = "malformed_request" if response.status_code == 400 else "validation_error"
    assert_error(response, response.status_code, code)
    assert await _stored_count(client) == 0


async def test_header_injection_attempts_store_nothing_and_leak_nothing(
    client: httpx.AsyncClient,
) -> None:
    attempts: list[dict[str, Any]] = [
        _with(to="victim@example.com\r\nBcc: everyone@example.com"),
        _with(subject="Hello\r\nBcc: everyone@example.com\r\n\r\nforged body"),
        _with(headers={"X-Campaign": "x\r\nBcc: everyone@example.com"}),
        _with(headers={"X-Campaign\r\nBcc": "everyone@example.com"}),
        _with(**{"from": "Boss\r\nReply-To: thief@example.com <boss@example.com>"}),
        _with(replyTo="help@example.com\nBcc: everyone@example.com"),
    ]
    for body in attempts:
        response = await client.post("/send", json=body)
        assert len(_fields(response)) == 1
    log = (await client.get("/logs/email")).json()
    assert log["data"] == []
    assert log["pagination"]["total"] == 0


@pytest.mark.parametrize("field", ["subject", "text", "html", "to"])
async def test_a_lone_surrogate_is_422_and_nothing_is_stored(
    client: httpx.AsyncClient, field: str
) -> None:
    # JSON may carry "\ud800"; PostgreSQL and the SMTP encoder cannot, and in a shared
    # group commit it would fail the other requests' emails too.
    body = {**VALID, field: "Jane\ud800 <jane@example.com>" if field == "to" else "x\ud800"}
    raw = json.dumps(body).encode()
    assert b"\\ud800" in raw
    response = await client.post("/send", content=raw, headers={"Content-Type": "application/json"})
    assert _fields(response) == [f"{field}[0]" if field == "to" else field]
    assert await _stored_count(client) == 0
