"""Delivery end to end: API → PostgreSQL → BullMQ/Redis → worker → SMTP server → log."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.api_calls import email_detail
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

EMAIL = {
    "to": "Jane Doe <jane@example.com>",
    "cc": ["carl@example.com"],
    "bcc": "hidden@example.com",
    "subject": "Your receipt",
    "text": "Thanks for your order.",
    "html": "<p>Thanks for your order.</p>",
    "headers": {"X-Campaign": "receipts"},
}


def _final(body: dict[str, Any]) -> bool:
    return body["status"] in ("sent", "failed")


async def test_an_accepted_email_is_delivered_and_logged_as_sent(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    async with running_worker(settings, smtp_server):
        response = await client.post("/send", json=EMAIL, headers={"X-Request-ID": "req-e2e-1"})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "queued"
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="delivery"
        )

    assert email["status"] == "sent"
    assert email["sentAt"] is not None and email["failedAt"] is None
    assert email["attempts"] == 1 and email["error"] is None
    assert email["requestId"] == "req-e2e-1"
    [attempt] = email["deliveryAttempts"]
    assert attempt["outcome"] == "accepted" and attempt["code"] == 250
    assert attempt["enhancedCode"] == "2.0.0"

    [received] = smtp_server.handler.messages()
    assert sorted(received.envelope_to) == [
        "carl@example.com",
        "hidden@example.com",
        "jane@example.com",
    ]
    assert received.envelope_from == "sender@example.com"
    message = message_from_bytes(received.raw, policy=policy.default)
    assert message["Message-ID"] == accepted["messageId"]
    assert message["Subject"] == "Your receipt"
    assert message["X-Campaign"] == "receipts"
    assert "Bcc" not in message and "hidden@example.com" not in received.raw.decode()

    log = (await client.get("/logs/email")).json()
    assert [item["id"] for item in log["data"]] == [accepted["id"]]
    assert log["data"][0]["status"] == "sent"
    assert log["summary"]["sent"] == 1 and log["summary"]["total"] == 1


async def test_a_550_fails_at_once_with_the_server_reply(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.data_replies.append("550 5.1.1 <jane@example.com>: mailbox unavailable")
    async with running_worker(settings, smtp_server):
        accepted = (await client.post("/send", json=EMAIL)).json()
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, what="failure"
        )

    assert email["status"] == "failed"
    assert email["failedAt"] is not None and email["sentAt"] is None
    assert email["attempts"] == 1
    assert email["error"] == {
        "code": 550,
        "enhancedCode": "5.1.1",
        "message": "<jane@example.com>: mailbox unavailable",
    }
    [attempt] = email["deliveryAttempts"]
    assert attempt["outcome"] == "permanent"
    assert smtp_server.handler.messages() == []

    log = (await client.get("/logs/email", params={"status": "failed"})).json()
    assert log["data"][0]["error"]["code"] == 550
    assert log["summary"]["failed"] == 1


async def test_two_451s_then_250_is_sent_with_three_attempts(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.data_replies.extend(
        ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]
    )
    async with running_worker(settings, smtp_server):
        accepted = (await client.post("/send", json=EMAIL)).json()
        email = await eventually(
            lambda: email_detail(client, accepted["id"]), _final, timeout=30, what="retries"
        )

    assert email["status"] == "sent"
    assert email["attempts"] == 3
    outcomes = [(a["number"], a["outcome"], a["code"]) for a in email["deliveryAttempts"]]
    assert outcomes == [(1, "transient", 451), (2, "transient", 451), (3, "accepted", 250)]
    assert email["error"] is None
    [received] = smtp_server.handler.messages()
    assert received.parsed()["Message-ID"] == accepted["messageId"]


async def test_redis_keeps_no_finished_jobs(
    client: httpx.AsyncClient,
    settings: Settings,
    smtp_server: SmtpTestServer,
    redis_client: redis.Redis,
    namespace: str,
) -> None:
    smtp_server.handler.data_replies.append("550 5.1.1 No such user")  # one failure, too
    async with running_worker(settings, smtp_server):
        ids = [(await client.post("/send", json=EMAIL)).json()["id"] for _ in range(30)]

        async def statuses() -> set[str]:
            return {(await email_detail(client, email_id))["status"] for email_id in ids}

        await eventually(statuses, lambda found: found <= {"sent", "failed"}, what="all final")

    # Only the queue's bookkeeping keys remain: no job hashes, nothing per email.
    keys = {key.decode() async for key in redis_client.scan_iter(match=f"{namespace}:*")}
    assert not any(email_id in key for key in keys for email_id in ids), sorted(keys)
    assert len(keys) < 10, sorted(keys)
