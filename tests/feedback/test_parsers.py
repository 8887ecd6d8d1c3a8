"""The payload parsers, DSN reader and authentication checks on their own: every kind of
event each provider documents, and the shapes that must be refused."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from mailroom.emails.feedback import FeedbackEvent, is_hard, normalize_message_id
from mailroom.emails.message import email_id_from_return_path
from mailroom.errors import Unauthorized
from mailroom.feedback import authn, dsn, providers, ses
from mailroom.suppressions.addresses import normalize
from tests.feedback.support import payload


def _postmark(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = payload(
        "postmark_bounce.json", EMAIL_ID=str(uuid.uuid4()), RECIPIENT="a@example.com"
    )
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("kind_name", "expected"),
    [
        ("HardBounce", ("bounced", "hard")),
        ("BadEmailAddress", ("bounced", "hard")),
        ("SoftBounce", ("bounced", "soft")),
        ("DnsError", ("bounced", "soft")),
        ("Unsubscribe", ("unsubscribed", None)),
        ("SpamComplaint", ("complained", None)),
        ("AutoResponder", None),
    ],
)
def test_postmark_bounce_types(kind_name: str, expected: tuple[str, str | None] | None) -> None:
    events = providers.postmark(_postmark(Type=kind_name))
    if expected is None:
        assert events == []
        return
    [event] = events
    assert (event.kind, event.bounce_type) == expected
    assert event.email_id is not None and event.provider_event_id == "Bounce:4323372036854775807"


def test_postmark_other_records_and_bad_shapes() -> None:
    assert providers.postmark({"RecordType": "Open"}) == []
    # Metadata that is not ours, or not an id, matches by nothing but the Message-ID.
    [event] = providers.postmark(_postmark(Metadata={"mailroom-email-id": "nope"}))
    assert event.email_id is None
    bad_shapes: list[Any] = [
        [],
        {"RecordType": "Bounce", "Type": "HardBounce", "ID": 1},
        {"RecordType": ["Bounce"]},
    ]
    for bad in bad_shapes:
        with pytest.raises(providers.PayloadError):
            providers.postmark(bad)


def test_brevo_events_and_batches() -> None:
    one = payload("brevo_hard_bounce.json", MESSAGE_ID="<m@x>", RECIPIENT="a@example.com")
    events = providers.brevo(
        [
            one,
            {**one, "event": "soft_bounce"},
            {**one, "event": "blocked"},
            {**one, "event": "invalid_email"},
            {**one, "event": "unsubscribed"},
            {**one, "event": "delivered"},
            {**one, "event": "opened"},
        ]
    )
    assert [(e.kind, e.bounce_type) for e in events] == [
        ("bounced", "hard"),
        ("bounced", "soft"),
        ("bounced", "soft"),
        ("bounced", "hard"),
        ("unsubscribed", None),
        ("delivered", None),
    ]
    assert events[0].occurred_at is not None
    assert len({e.provider_event_id for e in events}) == len(events)
    with pytest.raises(providers.PayloadError):
        providers.brevo({"event": "spam", "email": {"not": "text"}})


@pytest.mark.parametrize(
    ("name", "severity", "kind", "bounce"),
    [
        ("delivered", None, "delivered", None),
        ("failed", "temporary", "bounced", "soft"),
        ("complained", None, "complained", None),
        ("unsubscribed", None, "unsubscribed", None),
        ("opened", None, None, None),
    ],
)
def test_mailgun_events(
    name: str, severity: str | None, kind: str | None, bounce: str | None
) -> None:
    body = payload(
        "mailgun_permanent_fail.json",
        RECIPIENT="a@example.com",
        MESSAGE_ID_BARE="m@x",
        SIGNATURE="",
    )
    body["event-data"]["event"] = name
    body["event-data"]["severity"] = severity
    events = providers.mailgun(body)
    assert [(e.kind, e.bounce_type) for e in events] == ([(kind, bounce)] if kind else [])
    if events:
        assert events[0].message_id == "<m@x>" and events[0].status_code == "5.1.1"
    with pytest.raises(providers.PayloadError):
        providers.mailgun({"event-data": []})


def test_ses_notifications_and_bad_ones() -> None:
    import json

    bounce = payload("ses_bounce.json", MESSAGE_ID="<m@x>", RECIPIENT="a@example.com")
    bounce["bounce"]["bounceType"] = "Transient"
    del bounce["mail"]["commonHeaders"]
    [event] = ses.parse_notification({"Message": json.dumps(bounce), "MessageId": "1"})
    assert event.bounce_type == "soft" and event.message_id == "<m@x>"  # from mail.headers
    assert ses.parse_notification({"Message": json.dumps({"notificationType": "Open"})}) == []
    for bad in (
        "not json",
        "[]",
        json.dumps({"notificationType": "Bounce"}),
        json.dumps({"notificationType": "Complaint", "complaint": {"complainedRecipients": 1}}),
        json.dumps({"notificationType": "Delivery", "delivery": {"recipients": "a"}}),
    ):
        with pytest.raises(providers.PayloadError):
            ses.parse_notification({"Message": bad})


def test_tokens_and_signatures() -> None:
    secret = SecretStr("s3cret")
    basic = "Basic " + base64.b64encode(b"user:s3cret").decode()
    authn.check_token(secret, query_token=None, authorization=basic, provider="brevo")
    authn.check_token(secret, query_token="s3cret", authorization=None, provider="brevo")
    for authorization in ("Bearer s3cret", "Basic !!!", "Basic " + base64.b64encode(b"x").decode()):
        with pytest.raises(Unauthorized):
            authn.check_token(secret, query_token=None, authorization=authorization, provider="x")
    bodies: list[Any] = [{}, {"signature": {"timestamp": 1, "token": "t", "signature": "s"}}, []]
    for body in bodies:
        with pytest.raises(Unauthorized):
            authn.check_mailgun_signature(secret, body)


def test_dsn_shapes_that_are_not_reports() -> None:
    def one(raw: bytes) -> FeedbackEvent:
        [event] = dsn.parse_report(raw, envelope_to=[], bounce_domain=None)
        assert event.kind == "unknown" and event.raw is not None
        return event

    report = (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=%s; boundary="B"\r\n\r\n'
    )
    assert "disposition-notification" in str(
        one(report % b"disposition-notification" + b"--B\r\n\r\nx\r\n--B--\r\n").parse_error
    )
    assert "without its message/delivery-status" in str(
        one(
            report % b"delivery-status" + b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n"
        ).parse_error
    )
    delayed = (
        report
        % b"delivery-status"
        + b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
        b"Final-Recipient: rfc822; a@example.com\r\nAction: delayed\r\nStatus: 4.4.1\r\n--B--\r\n"
    )
    assert "no failed or delivered" in str(one(delayed).parse_error)
    assert "without its message/feedback-report" in str(
        one(
            report % b"feedback-report" + b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n"
        ).parse_error
    )


def test_small_helpers() -> None:
    email_id = uuid.uuid4()
    assert email_id_from_return_path(f"<bounces+{email_id.hex}@B.example>", "b.example") == email_id
    assert email_id_from_return_path(f"bounces+{email_id.hex}@other.example", "b.example") is None
    assert email_id_from_return_path("someone@b.example", "b.example") is None
    assert email_id_from_return_path(f"bounces+{email_id.hex}@b.example", None) is None
    assert normalize_message_id(" abc@x ") == "<abc@x>"
    assert normalize_message_id("<>") is None
    assert not is_hard(FeedbackEvent("dsn", "bounced", bounce_type="hard", status_code="5.7.1"))
    assert is_hard(FeedbackEvent("dsn", "bounced", bounce_type="hard", status_code="5.1.1"))
    assert normalize("<Jane@EXAMPLE.com>") == "Jane@example.com"
    for bad in (
        "",
        "jane",
        "@example.com",
        "jane@",
        "a b@example.com",
        "a@b@c",
        "x" * 330 + "@e.com",
    ):
        with pytest.raises(ValueError, match=r"\w"):
            normalize(bad)
