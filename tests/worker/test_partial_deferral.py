"""A server that accepts some recipients and defers one: only that one is sent again.

A real SMTP server (aiosmtpd, scripted per recipient), the real worker and API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

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
}
DEFERRED = "451 4.2.0 Mailbox busy, try later"


def _states(email: dict[str, Any]) -> dict[str, str]:
    return {r["address"]: r["status"] for r in email["recipients"]}


async def _summary(client: httpx.AsyncClient) -> dict[str, Any]:
    summary: dict[str, Any] = (await client.get("/logs/email")).json()["summary"]
    return summary


async def test_only_the_deferred_recipient_is_sent_again(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    smtp_server: SmtpTestServer,
) -> None:
    settings = settings_factory(max_attempts=50)  # the deferral lasts as long as the test says
    smtp_server.handler.rcpt_replies["carl@example.com"] = DEFERRED
    async with running_worker(settings, smtp_server):
        accepted = (await client.post("/send", json=EMAIL)).json()
        # Accepted for two, deferred for one, and retried (for that one only) at least once.
        email = await eventually(
            lambda: email_detail(client, accepted["id"]),
            lambda e: e["attempts"] >= 2,
            timeout=30,
            what="a retry of the deferred recipient",
        )
        assert email["status"] in ("retrying", "sending")
        assert _states(email) == {
            "jane@example.com": "sent",
            "carl@example.com": "deferred",
            "hidden@example.com": "sent",
        }
        [carl] = [r for r in email["recipients"] if r["address"] == "carl@example.com"]
        assert (carl["code"], carl["enhancedCode"]) == (451, "4.2.0")
        # Not finished: today's report counts it as pending, not sent.
        summary = await _summary(client)
        assert (summary["sent"], summary["pending"], summary["failed"]) == (0, 1, 0)

        del smtp_server.handler.rcpt_replies["carl@example.com"]
        email = await eventually(
            lambda: email_detail(client, accepted["id"]),
            lambda e: e["status"] == "sent",
            timeout=30,
            what="the deferred recipient delivered",
        )
    assert set(_states(email).values()) == {"sent"}
    assert email["sentAt"] is not None
    first, second = sorted(smtp_server.handler.messages(), key=lambda m: len(m.envelope_to))[::-1]
    assert sorted(first.envelope_to) == ["hidden@example.com", "jane@example.com"]
    assert list(second.envelope_to) == ["carl@example.com"]
    # The same message each time: one Message-ID, so the recipients see one email.
    assert first.parsed()["Message-ID"] == second.parsed()["Message-ID"] == accepted["messageId"]
    summary = await _summary(client)
    assert (summary["sent"], summary["pending"], summary["failed"]) == (1, 0, 0)


async def test_a_recipient_still_deferred_when_attempts_run_out_is_failed(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    smtp_server: SmtpTestServer,
) -> None:
    settings = settings_factory(max_attempts=3)
    smtp_server.handler.rcpt_replies["carl@example.com"] = DEFERRED
    async with running_worker(settings, smtp_server):
        accepted = (await client.post("/send", json=EMAIL)).json()
        email = await eventually(
            lambda: email_detail(client, accepted["id"]),
            lambda e: e["status"] in ("sent", "failed"),
            timeout=30,
            what="the attempts used up",
        )
    # Delivered to two recipients: the email is sent; the third is failed on its own.
    assert email["status"] == "sent" and email["attempts"] == 3
    assert _states(email) == {
        "jane@example.com": "sent",
        "carl@example.com": "failed",
        "hidden@example.com": "sent",
    }
    # Sent once to the two that accepted, never again.
    [received] = smtp_server.handler.messages()
    assert sorted(received.envelope_to) == ["hidden@example.com", "jane@example.com"]
    summary = await _summary(client)
    assert (summary["sent"], summary["pending"], summary["failed"]) == (1, 0, 0)


async def test_a_recipient_refused_for_good_is_failed_and_not_retried(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.rcpt_replies["carl@example.com"] = "550 5.1.1 No such user"
    async with running_worker(settings, smtp_server):
        accepted = (await client.post("/send", json=EMAIL)).json()
        email = await eventually(
            lambda: email_detail(client, accepted["id"]),
            lambda e: e["status"] in ("sent", "failed"),
            timeout=30,
            what="delivery",
        )
    assert email["status"] == "sent" and email["attempts"] == 1
    assert _states(email)["carl@example.com"] == "failed"
    assert len(smtp_server.handler.messages()) == 1
