"""The worker and the list: unknown mailboxes are suppressed from its own attempts, and a
suppressed recipient never reaches the SMTP server, until the suppression is removed."""

from __future__ import annotations

from typing import Any

import httpx

from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually


async def _status(client: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    detail: dict[str, Any] = (await client.get(f"/emails/{email_id}")).json()
    return detail


async def _sent(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": "Hello", "text": "Hi", **fields}
    response = await client.post("/send", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def _finished(client: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: _status(client, email_id),
        lambda d: d["status"] in ("sent", "failed", "suppressed", "bounced"),
        what="the email to finish",
    )


async def test_an_unknown_mailbox_is_suppressed_and_never_sent_to_again(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.rcpt_replies["gone@example.com"] = (
        "550 5.1.1 <gone@example.com>: no such user"
    )
    smtp_server.handler.rcpt_replies["blocked@example.com"] = "550 5.7.1 policy: blocked"
    async with running_worker(settings, smtp_server):
        first = await _sent(
            client, to=["gone@example.com", "blocked@example.com", "jane@example.com"]
        )
        detail = await _finished(client, first["id"])
        assert detail["status"] == "sent"

        entry = await client.get("/suppressions/gone@example.com")
        assert entry.status_code == 200, entry.text
        assert entry.json()["reason"] == "hard_bounce"
        assert entry.json()["emailId"] == first["id"]
        # A policy block says nothing about the mailbox.
        assert (await client.get("/suppressions/blocked@example.com")).status_code == 404

        # Left out of the next envelope; alone, the email is never sent at all.
        second = await _sent(client, to=["gone@example.com", "carl@example.com"])
        assert second["suppressed"] == ["gone@example.com"]
        assert (await _finished(client, second["id"]))["status"] == "sent"
        alone = await _sent(client, to="gone@example.com")
        assert alone["status"] == "suppressed"
        assert (await _status(client, alone["id"]))["deliveryAttempts"] == []

        envelopes = [m.envelope_to for m in smtp_server.handler.messages()]  # newest first
        assert envelopes == [("carl@example.com",), ("jane@example.com",)]

        # Removed: the next email goes through.
        del smtp_server.handler.rcpt_replies["gone@example.com"]
        assert (await client.delete("/suppressions/gone@example.com")).status_code == 204
        third = await _sent(client, to="gone@example.com")
        assert (await _finished(client, third["id"]))["status"] == "sent"
        assert smtp_server.handler.messages()[0].envelope_to == ("gone@example.com",)
