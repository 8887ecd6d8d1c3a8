"""GET /emails/{id} through the real app."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.shapes import DETAIL_KEYS

DETAIL_ONLY = {
    "recipients",
    "replyTo",
    "text",
    "html",
    "headers",
    "requestId",
    "attachments",
    "deliveryAttempts",
    "feedback",
    "events",
}


async def _send(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi"}
    body.update(fields)
    response = await client.post("/send", json=body)
    assert response.status_code == 202, response.text
    return response


def _not_found(response: httpx.Response) -> str:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "not_found"
    assert body["error"]["details"] is None
    message: str = body["error"]["message"]
    assert message
    return message


async def test_a_queued_email_in_full(client: httpx.AsyncClient) -> None:
    sent = await _send(
        client,
        to=["Jane Doe <jane@example.com>"],
        cc=["carl@example.com"],
        bcc="hidden@example.com",
        replyTo="help@example.com",
        **{"from": "Acme <no-reply@acme.example.org>"},
        subject="Your receipt",
        text="Thanks.",
        html="<p>Thanks.</p>",
        headers={"X-Campaign": "receipts"},
    )
    accepted = sent.json()

    response = await client.get(f"/emails/{accepted['id']}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert set(detail) == DETAIL_KEYS
    [event] = detail.pop("events")
    assert event == {
        "id": event["id"],
        "type": "email.queued",
        "timestamp": accepted["createdAt"],  # written in the acceptance's transaction
        "data": {
            "emailId": accepted["id"],
            "messageId": accepted["messageId"],
            "to": ["Jane Doe <jane@example.com>"],
            "subject": "Your receipt",
            "status": "queued",
            "attempt": 0,
            "error": None,
            "nextAttemptAt": event["data"]["nextAttemptAt"],
            "sandbox": False,
        },
    }
    assert detail == {
        "id": accepted["id"],
        "project": "default",
        "from": "Acme <no-reply@acme.example.org>",
        "to": ["Jane Doe <jane@example.com>"],
        "cc": ["carl@example.com"],
        "bcc": ["hidden@example.com"],
        "replyTo": ["help@example.com"],
        "subject": "Your receipt",
        "text": "Thanks.",
        "html": "<p>Thanks.</p>",
        "headers": {"X-Campaign": "receipts"},
        "status": "queued",
        "attempts": 0,
        "messageId": accepted["messageId"],
        "createdAt": accepted["createdAt"],
        "sentAt": None,
        "failedAt": None,
        "cancelledAt": None,
        "sendAt": None,
        "sandbox": False,
        # Due at once: the sweeper finds it by this if its job never reaches a worker.
        "nextAttemptAt": accepted["createdAt"],
        "error": None,
        # Without an X-Request-ID header the generated one is stored.
        "requestId": sent.headers["x-request-id"],
        "attachments": [],
        "deliveryAttempts": [],
        "bounced": False,
        "complained": False,
        "suppressed": [],
        "feedback": [],
        # Every envelope recipient (Bcc included), none answered for yet.
        "recipients": [
            {"address": a, "status": "pending", "code": None, "enhancedCode": None, "message": None}
            for a in ("jane@example.com", "carl@example.com", "hidden@example.com")
        ],
    }


async def test_the_detail_agrees_with_the_log_item(client: httpx.AsyncClient) -> None:
    accepted = (await _send(client, cc="carl@example.com")).json()
    detail = (await client.get(f"/emails/{accepted['id']}")).json()
    [item] = (await client.get("/logs/email")).json()["data"]
    assert {k: v for k, v in detail.items() if k not in DETAIL_ONLY} == item


async def test_an_upper_case_id_finds_the_email(client: httpx.AsyncClient) -> None:
    accepted = (await _send(client)).json()
    response = await client.get(f"/emails/{accepted['id'].upper()}")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == accepted["id"]


async def test_an_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    await _send(client)
    unknown = uuid.uuid4()
    message = _not_found(await client.get(f"/emails/{unknown}"))
    assert str(unknown) in message


@pytest.mark.parametrize(
    "email_id",
    [
        pytest.param("not-a-uuid", id="words"),
        pytest.param("12345", id="digits"),
        pytest.param("00000000-0000-0000-0000-00000000000g", id="bad-hex"),
        pytest.param("x" * 500, id="very-long"),
        pytest.param("%00", id="nul"),
        pytest.param("' OR 1=1 --", id="sql-ish"),
    ],
)
async def test_a_malformed_id_is_404(client: httpx.AsyncClient, email_id: str) -> None:
    message = _not_found(await client.get(f"/emails/{email_id}"))
    assert len(message) < 200
