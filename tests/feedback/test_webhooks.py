"""POST /feedback/{provider} through the real app and database: each provider's documented
sample events, authentication, and every kind of bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.app import create_app
from mailroom.auth.scopes import Scope
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import make_key
from tests.feedback.support import TOPIC, SnsSigner, payload
from tests.support.factories import email_row, insert_emails

MAILGUN_KEY = "key-mailgun-signing-test"


@pytest.fixture
def signer() -> SnsSigner:
    return SnsSigner()


@pytest.fixture
async def feedback_client(
    settings_factory: Callable[..., Settings], clean: None, api_key: str, signer: SnsSigner
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(
        feedback_postmark_token="pm-secret",
        feedback_brevo_token="brevo-secret",
        feedback_mailgun_signing_key=MAILGUN_KEY,
        feedback_ses_topic_arns=f"arn:aws:sns:eu-west-1:1:other,{TOPIC}",
    )
    app = create_app(settings, feedback_transport=signer.transport())
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://mailroom.test",
            headers={"Authorization": f"Bearer {api_key}"},
        ) as client:
            yield client


async def _sent_email(
    sessions: async_sessionmaker[AsyncSession], *recipients: str
) -> tuple[uuid.UUID, str]:
    """A `sent` email to these recipients: (id, Message-ID)."""
    email_id = uuid.uuid4()
    message_id = f"<{email_id.hex}@example.com>"
    to = list(recipients) or ["jane@example.com"]
    row = email_row(
        datetime.now(UTC),
        "sent",
        id=email_id,
        message_id=message_id,
        to_addrs=to,
        recipients=[r.lower() for r in to],
    )
    await insert_emails(sessions, row)
    return email_id, message_id


def _mailgun(body: dict[str, Any], key: str = MAILGUN_KEY) -> dict[str, Any]:
    signature = body["signature"]
    signature["signature"] = hmac.new(
        key.encode(), (signature["timestamp"] + signature["token"]).encode(), hashlib.sha256
    ).hexdigest()
    return body


async def _post(client: httpx.AsyncClient, path: str, body: Any, **kw: Any) -> httpx.Response:
    return await client.post(path, content=json.dumps(body), **kw)


async def _bounced_and_suppressed(
    client: httpx.AsyncClient, email_id: uuid.UUID, recipient: str = "jane@example.com"
) -> None:
    detail = (await client.get(f"/emails/{email_id}")).json()
    assert detail["status"] == "bounced", detail
    assert detail["bounced"] is True
    assert detail["sentAt"] is not None
    [event] = detail["feedback"]
    assert event["kind"] == "bounced" and event["bounceType"] == "hard"
    assert event["recipient"] == recipient
    entry = (await client.get(f"/suppressions/{recipient}")).json()
    assert entry["reason"] == "hard_bounce" and entry["emailId"] == str(email_id)
    # The next email to it is never sent.
    accepted = await client.post("/send", json={"to": recipient, "subject": "s", "text": "t"})
    assert accepted.json()["status"] == "suppressed"


async def test_postmark_hard_bounce(
    feedback_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email_id, _ = await _sent_email(sessions)
    body = payload("postmark_bounce.json", EMAIL_ID=str(email_id), RECIPIENT="jane@example.com")
    response = await _post(feedback_client, "/feedback/postmark?token=pm-secret", body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": 1,
        "matched": 1,
        "unmatched": 0,
        "duplicates": 0,
        "emails": [str(email_id)],
    }
    await _bounced_and_suppressed(feedback_client, email_id)
    # Postmark retries a webhook it thinks failed: the same event again changes nothing.
    again = await _post(feedback_client, "/feedback/postmark?token=pm-secret", body)
    assert again.json()["duplicates"] == 1


async def test_postmark_delivery_and_complaint_with_basic_auth(
    feedback_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email_id, _ = await _sent_email(sessions)
    auth = {"Authorization": "Basic " + base64.b64encode(b"postmark:pm-secret").decode()}
    for name in ("postmark_delivery.json", "postmark_spam_complaint.json"):
        body = payload(name, EMAIL_ID=str(email_id), RECIPIENT="jane@example.com")
        response = await _post(feedback_client, "/feedback/postmark", body, headers=auth)
        assert response.status_code == 200, response.text
    detail = (await feedback_client.get(f"/emails/{email_id}")).json()
    assert detail["status"] == "sent"
    assert detail["complained"] is True and detail["bounced"] is False
    assert [f["kind"] for f in detail["feedback"]] == ["delivered", "complained"]
    entry = (await feedback_client.get("/suppressions/jane@example.com")).json()
    assert entry["reason"] == "complaint"
    log = (await feedback_client.get("/logs/email")).json()
    assert log["summary"]["complained"] == 1
    assert log["data"][0]["complained"] is True


async def test_brevo_hard_bounce_by_message_id(
    feedback_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email_id, message_id = await _sent_email(sessions)
    body = payload("brevo_hard_bounce.json", MESSAGE_ID=message_id, RECIPIENT="jane@example.com")
    response = await _post(feedback_client, "/feedback/brevo?token=brevo-secret", body)
    assert response.status_code == 200, response.text
    await _bounced_and_suppressed(feedback_client, email_id)
    log = (await feedback_client.get("/logs/email", params={"status": "bounced"})).json()
    assert [i["id"] for i in log["data"]] == [str(email_id)]
    assert log["data"][0]["bounced"] is True
    assert log["summary"]["bounced"] == 1 and log["summary"]["failed"] == 1


async def test_mailgun_permanent_failure(
    feedback_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email_id, message_id = await _sent_email(sessions)
    body = _mailgun(
        payload(
            "mailgun_permanent_fail.json",
            MESSAGE_ID_BARE=message_id.strip("<>"),
            RECIPIENT="jane@example.com",
            SIGNATURE="",
        )
    )
    response = await _post(feedback_client, "/feedback/mailgun", body)
    assert response.status_code == 200, response.text
    await _bounced_and_suppressed(feedback_client, email_id)

    forged = _mailgun(payload("mailgun_permanent_fail.json", SIGNATURE=""), key="other")
    assert_error(await _post(feedback_client, "/feedback/mailgun", forged), 401, "unauthorized")
    unsigned = payload("mailgun_permanent_fail.json", SIGNATURE="")
    del unsigned["signature"]
    assert_error(await _post(feedback_client, "/feedback/mailgun", unsigned), 401, "unauthorized")


async def test_ses_bounce_over_a_signed_sns_notification(
    feedback_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    signer: SnsSigner,
) -> None:
    email_id, message_id = await _sent_email(sessions, "jane@example.com", "carl@example.com")
    for recipient in ("jane@example.com", "carl@example.com"):
        ses = payload("ses_bounce.json", MESSAGE_ID=message_id, RECIPIENT=recipient)
        body = signer.message(message=json.dumps(ses), version="2")
        response = await _post(feedback_client, "/feedback/ses", body)
        assert response.status_code == 200, response.text
        status = (await feedback_client.get(f"/emails/{email_id}")).json()["status"]
        # Bounced only once every recipient has hard-bounced.
        assert status == ("sent" if recipient == "jane@example.com" else "bounced")
    # The certificate was fetched once, from the SNS URL only.
    assert signer.requests == [
        "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-test.pem"
    ]

    for name in ("ses_complaint.json", "ses_delivery.json"):
        ses = payload(name, MESSAGE_ID=message_id, RECIPIENT="jane@example.com")
        response = await _post(
            feedback_client, "/feedback/ses", signer.message(message=json.dumps(ses))
        )
        assert response.status_code == 200, response.text
        assert response.json()["matched"] == 1


async def test_sns_subscription_is_confirmed(
    feedback_client: httpx.AsyncClient, signer: SnsSigner
) -> None:
    url = (
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"
        f"&TopicArn={TOPIC}&Token=2336412f37fb"
    )
    body = signer.message(
        "SubscriptionConfirmation",
        message="You have chosen to subscribe to the topic.",
        SubscribeURL=url,
        Token="2336412f37fb",
    )
    response = await _post(feedback_client, "/feedback/ses", body)
    assert response.status_code == 200, response.text
    assert url in signer.requests


async def test_sns_messages_that_must_be_refused(
    feedback_client: httpx.AsyncClient, signer: SnsSigner
) -> None:
    good = signer.message(message="{}")
    tampered = {**good, "Message": '{"notificationType": "Bounce"}'}
    assert_error(await _post(feedback_client, "/feedback/ses", tampered), 401, "unauthorized")

    elsewhere = signer.message(message="{}")
    elsewhere["SigningCertURL"] = "https://evil.example.com/SimpleNotificationService-test.pem"
    assert_error(await _post(feedback_client, "/feedback/ses", elsewhere), 401, "unauthorized")
    lookalike = {**elsewhere, "SigningCertURL": "https://sns.us-west-2.amazonaws.com.evil.io/a.pem"}
    assert_error(await _post(feedback_client, "/feedback/ses", lookalike), 401, "unauthorized")
    assert not any("evil" in r for r in signer.requests)

    replayed = signer.message(message="{}", timestamp=datetime.now(UTC) - timedelta(hours=2))
    error = assert_error(
        await _post(feedback_client, "/feedback/ses", replayed), 422, "validation_error"
    )
    assert "older" in error["message"] or "hour" in error["message"]

    other_topic = {**good, "TopicArn": "arn:aws:sns:us-east-1:999:attacker"}
    assert_error(await _post(feedback_client, "/feedback/ses", other_topic), 401, "unauthorized")

    other_key = SnsSigner().message(message="{}")
    assert_error(await _post(feedback_client, "/feedback/ses", other_key), 401, "unauthorized")


async def test_tokens_and_unconfigured_providers(
    feedback_client: httpx.AsyncClient, settings: Settings, api_key: str
) -> None:
    body = payload("brevo_spam.json", MESSAGE_ID="<x@example.com>", RECIPIENT="a@example.com")
    assert_error(await _post(feedback_client, "/feedback/brevo", body), 401, "unauthorized")
    assert_error(
        await _post(feedback_client, "/feedback/brevo?token=wrong", body), 401, "unauthorized"
    )
    wrong_basic = {"Authorization": "Basic " + base64.b64encode(b"u:nope").decode()}
    assert_error(
        await _post(feedback_client, "/feedback/brevo", body, headers=wrong_basic),
        401,
        "unauthorized",
    )
    assert_error(await _post(feedback_client, "/feedback/nope", body), 404, "not_found")

    # Without the settings every provider's endpoint is off.
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as bare:
            for provider in ("postmark", "brevo", "mailgun", "ses"):
                response = await _post(bare, f"/feedback/{provider}?token=x", body)
                assert_error(response, 404, "not_found")


async def test_bad_bodies_are_4xx_and_unknown_emails_are_kept(
    feedback_client: httpx.AsyncClient,
) -> None:
    url = "/feedback/brevo?token=brevo-secret"
    malformed = await feedback_client.post(url, content=b"{not json")
    assert_error(malformed, 400, "malformed_request")
    assert_error(
        await _post(feedback_client, url, {"email": "a@example.com"}), 422, "validation_error"
    )
    assert_error(await _post(feedback_client, url, [1, 2]), 422, "validation_error")
    pm = "/feedback/postmark?token=pm-secret"
    assert_error(
        await _post(feedback_client, pm, {"RecordType": "Bounce"}), 422, "validation_error"
    )
    assert_error(await _post(feedback_client, pm, "text"), 422, "validation_error")

    ignored = await _post(feedback_client, url, {"event": "opened", "email": "a@example.com"})
    assert ignored.json()["received"] == 0

    unknown = payload(
        "brevo_hard_bounce.json", MESSAGE_ID="<nobody@else>", RECIPIENT="x@example.com"
    )
    response = await _post(feedback_client, url, unknown)
    assert response.status_code == 200
    assert response.json()["unmatched"] == 1
    listed = (await feedback_client.get("/feedback/unmatched")).json()
    [item] = listed["data"]
    assert item["provider"] == "brevo" and item["messageId"] == "<nobody@else>"
    assert item["reason"] == "no email has this Message-ID"
    # Nothing was suppressed for an email that is not ours.
    assert (await feedback_client.get("/suppressions/x@example.com")).status_code == 404


async def test_concurrent_requests_share_a_transaction_and_each_gets_its_answer(
    feedback_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sent = [await _sent_email(sessions, f"user{n}@example.com") for n in range(8)]
    bodies = [
        payload("brevo_hard_bounce.json", MESSAGE_ID=message_id, RECIPIENT=f"user{n}@example.com")
        for n, (_, message_id) in enumerate(sent)
    ]
    url = "/feedback/brevo?token=brevo-secret"
    # The first event twice (a provider's retry racing its original), and one unknown.
    unknown = payload("brevo_spam.json", MESSAGE_ID="<nobody@x>", RECIPIENT="z@example.com")
    responses = await asyncio.gather(
        *(_post(feedback_client, url, b) for b in [*bodies, bodies[0], unknown])
    )
    answers = [r.json() for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert sum(a["matched"] for a in answers) == 8
    assert sum(a["duplicates"] for a in answers) == 1
    assert answers[-1]["unmatched"] == 1
    for email_id, _ in sent:
        assert (await feedback_client.get(f"/emails/{email_id}")).json()["status"] == "bounced"


async def test_the_unmatched_list_pages_and_needs_admin(
    feedback_client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    url = "/feedback/brevo?token=brevo-secret"
    for n in range(3):
        body = payload("brevo_spam.json", MESSAGE_ID=f"<none-{n}@x>", RECIPIENT="a@example.com")
        assert (await _post(feedback_client, url, body)).json()["unmatched"] == 1
    first = (await feedback_client.get("/feedback/unmatched", params={"limit": 2})).json()
    assert [i["messageId"] for i in first["data"]] == ["<none-2@x>", "<none-1@x>"]
    assert first["hasMore"] is True
    rest = await feedback_client.get(
        "/feedback/unmatched", params={"limit": 2, "cursor": first["nextCursor"]}
    )
    assert [i["messageId"] for i in rest.json()["data"]] == ["<none-0@x>"]
    assert rest.json()["nextCursor"] is None
    bad = await feedback_client.get("/feedback/unmatched", params={"cursor": "garbage"})
    assert_error(bad, 422, "validation_error")

    reader = await make_key(sessions, (Scope.LOGS_READ,))
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://t",
            headers={"Authorization": f"Bearer {reader}"},
        ) as client:
            assert_error(await client.get("/feedback/unmatched"), 403, "forbidden")


async def test_each_report_emits_its_webhook_event_and_the_last_bounce_says_bounced(
    feedback_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email_id, _ = await _sent_email(sessions, "jane@example.com", "carl@example.com")
    auth = {"Authorization": "Basic " + base64.b64encode(b"postmark:pm-secret").decode()}
    delivered = payload(
        "postmark_delivery.json", EMAIL_ID=str(email_id), RECIPIENT="jane@example.com"
    )
    assert (await _post(feedback_client, "/feedback/postmark", delivered, headers=auth)).is_success
    for number, recipient in enumerate(("jane@example.com", "carl@example.com")):
        body = payload("postmark_bounce.json", EMAIL_ID=str(email_id), RECIPIENT=recipient)
        body["ID"] += number  # a report of its own, not a provider's redelivery
        assert (await _post(feedback_client, "/feedback/postmark", body, headers=auth)).is_success
    events = (await feedback_client.get(f"/emails/{email_id}")).json()["events"]
    assert [e["type"] for e in events] == [
        "email.sent",
        "email.delivered",
        "email.bounced",
        "email.bounced",
    ]
    first, last = events[2]["data"], events[3]["data"]
    assert (first["recipient"], first["status"], first["bounceType"]) == (
        "jane@example.com",
        "sent",
        "hard",
    )
    assert (last["recipient"], last["status"]) == ("carl@example.com", "bounced")
    assert last["provider"] == "postmark" and last["emailId"] == str(email_id)
