"""Webhooks end to end: API → PostgreSQL (events outbox) → BullMQ → worker → a real
HTTP receiver, every request checked with the `standardwebhooks` package."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.api_calls import create_endpoint, email_detail, send_email
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually
from tests.support.webhook_receiver import Received, Reply, WebhookReceiver

EMAIL = {"to": "Jane <jane@example.com>", "subject": "Receipt", "text": "Thanks"}


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload, if `standardwebhooks` accepts the request as signed by ``secret``."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def _attempts(
    client: httpx.AsyncClient, endpoint_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/webhooks/{endpoint_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _types(receiver: WebhookReceiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.received]


async def test_an_email_s_events_arrive_signed_in_order_with_their_ids(
    hooks: httpx.AsyncClient,
    local_settings: Settings,
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    async with running_worker(local_settings, smtp_server):
        accepted = await send_email(hooks, EMAIL)
        await eventually(lambda: _aw(receiver), lambda n: n >= 2, what="two events")
    email = await email_detail(hooks, accepted["id"])
    assert [e["type"] for e in email["events"]] == ["email.queued", "email.sent"]
    assert _types(receiver) == ["email.queued", "email.sent"]
    for request, event in zip(receiver.received, email["events"], strict=True):
        payload = verified(endpoint["secret"], request)
        assert request.headers["webhook-id"] == event["id"]
        assert request.headers["content-type"] == "application/json"
        assert payload["type"] == event["type"]
        assert payload["data"] == event["data"]
        assert datetime.fromisoformat(payload["timestamp"]) == datetime.fromisoformat(
            event["timestamp"]
        )
        assert set(payload["data"]) >= {
            "emailId",
            "messageId",
            "to",
            "subject",
            "status",
            "attempt",
            "error",
        }
        assert "text" not in payload["data"] and "html" not in payload["data"]
    sent = json.loads(receiver.received[1].body)["data"]
    assert sent["status"] == "sent" and sent["attempt"] == 1 and sent["error"] is None
    assert sent["emailId"] == accepted["id"] and sent["to"] == ["Jane <jane@example.com>"]
    log = await _attempts(hooks, endpoint["id"])
    assert {(a["eventType"], a["status"], a["responseCode"], a["attempt"]) for a in log} == {
        ("email.queued", "succeeded", 200, 1),
        ("email.sent", "succeeded", 200, 1),
    }
    assert all(a["responseBody"] == "ok" and a["error"] is None for a in log)


async def _aw(receiver: WebhookReceiver) -> int:
    return len(receiver.received)


async def test_a_receiver_down_for_a_while_then_gets_every_event_exactly_as_signed(
    hooks: httpx.AsyncClient,
    webhook_settings: Callable[..., Settings],
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
) -> None:
    settings = webhook_settings(webhook_retry_schedule="1,1,1,1,1,1,1,1,1,1")
    endpoint = await create_endpoint(hooks, receiver.url, events=["email.queued", "email.sent"])
    await receiver.stop()
    async with running_worker(settings, smtp_server):
        emails = [await send_email(hooks, EMAIL) for _ in range(3)]
        await eventually(
            lambda: _attempts(hooks, endpoint["id"], status="pending"),
            lambda found: len({a["eventId"] for a in found}) >= 6,
            what="every event failing once",
        )
        await receiver.start()
        await eventually(
            lambda: _attempts(hooks, endpoint["id"], status="succeeded"),
            lambda found: len(found) >= 6,
            what="every event delivered",
        )
    expected = {
        e["id"]: e
        for accepted in emails
        for e in (await email_detail(hooks, accepted["id"]))["events"]
    }
    assert len(expected) == 6
    got: dict[str, dict[str, Any]] = {}
    for request in receiver.received:
        payload = verified(endpoint["secret"], request)
        got[request.headers["webhook-id"]] = payload
    assert set(got) == set(expected)
    for event_id, payload in got.items():
        assert payload["type"] == expected[event_id]["type"]
        assert payload["data"] == expected[event_id]["data"]
    failed = await _attempts(hooks, endpoint["id"], status="pending")
    assert all("Connection failed" in a["error"] and a["nextAttemptAt"] for a in failed)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(mode="huge"), None),
        (Reply(mode="endless"), None),
        (Reply(mode="hang"), "Timed out after 1 s"),
        (
            Reply(status=302, headers={"location": "http://127.0.0.1:1/"}),
            "redirects are not followed",
        ),
        (Reply(status=500, body=b"z" * 10_000), "answered 500"),
    ],
)
async def test_hostile_receivers_are_failed_attempts_never_a_stuck_worker(
    hooks: httpx.AsyncClient,
    webhook_settings: Callable[..., Settings],
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
    reply: Reply,
    error: str | None,
) -> None:
    settings = webhook_settings(
        webhook_retry_schedule="1",
        webhook_timeout=1,
    )
    receiver.behaviour = lambda _: reply
    endpoint = await create_endpoint(hooks, receiver.url, events=["email.queued"])
    async with running_worker(settings, smtp_server):
        await send_email(hooks, EMAIL)
        log = await eventually(
            lambda: _attempts(hooks, endpoint["id"]),
            lambda found: any(a["status"] != "pending" for a in found),
            timeout=20,
            what="the last attempt",
        )
    last = log[0]
    if reply.mode in ("huge", "endless"):
        assert last["attempt"] == 1
        # The answer's status came first; only the first 4 KB of its body were read.
        assert last["status"] == "succeeded"
        assert last["responseBody"] is not None and len(last["responseBody"]) == 4096
        assert last["durationMs"] < 1000
    else:
        assert last["attempt"] == 2  # one retry (the schedule has one wait), then given up
        assert last["status"] == "failed"
        assert error is not None and error in last["error"]
    if reply.status == 500:
        assert len(last["responseBody"]) == 4096


async def test_410_gone_disables_the_endpoint_and_keeps_its_events_for_replay(
    hooks: httpx.AsyncClient,
    local_settings: Settings,
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
) -> None:
    receiver.behaviour = lambda _: Reply(status=410)
    endpoint = await create_endpoint(hooks, receiver.url)
    async with running_worker(local_settings, smtp_server):
        accepted = await send_email(hooks, EMAIL)
        found = await eventually(
            lambda: hooks.get(f"/webhooks/{endpoint['id']}"),
            lambda r: r.json()["enabled"] is False,
            what="the endpoint disabled",
        )
        assert "410" in found.json()["disabledReason"]
        email = await eventually(
            lambda: email_detail(hooks, accepted["id"]),
            lambda e: e["status"] == "sent",
            what="sent",
        )
        receiver.behaviour = lambda _: Reply()
        again = await hooks.patch(f"/webhooks/{endpoint['id']}", json={"enabled": True})
        assert again.json()["enabled"] is True and again.json()["disabledReason"] is None
        replay = await hooks.post(
            f"/webhooks/{endpoint['id']}/replay",
            json={"eventIds": [e["id"] for e in email["events"]]},
        )
        assert replay.status_code == 202, replay.text
        assert replay.json() == {"replayed": 2}
        queued_id, sent_id = (e["id"] for e in email["events"])

        async def ids() -> list[str]:
            return [r.headers["webhook-id"] for r in receiver.received]

        # Re-enabled, it also resumes the email.sent delivery still pending, if there was one.
        got = await eventually(
            ids, lambda i: i.count(queued_id) == 2 and sent_id in i, what="the replays"
        )
    assert got[0] == queued_id and set(got) == {queued_id, sent_id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
    assert stamps == sorted(stamps)
    for request in receiver.received:
        verified(endpoint["secret"], request)


async def test_a_failing_endpoint_is_disabled_after_webhook_disable_after(
    hooks: httpx.AsyncClient,
    webhook_settings: Callable[..., Settings],
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
) -> None:
    settings = webhook_settings(
        webhook_retry_schedule="1,1,1,1",
        webhook_disable_after=0.5,
    )
    receiver.behaviour = lambda _: Reply(status=500)
    endpoint = await create_endpoint(hooks, receiver.url, events=["email.queued"])
    async with running_worker(settings, smtp_server):
        await send_email(hooks, EMAIL)
        found = await eventually(
            lambda: hooks.get(f"/webhooks/{endpoint['id']}"),
            lambda r: r.json()["enabled"] is False,
            what="the endpoint disabled",
        )
    assert found.json()["disabledReason"].startswith("Every attempt failed since")
    assert len(receiver.received) == 2


async def test_retry_after_is_honoured(
    hooks: httpx.AsyncClient,
    webhook_settings: Callable[..., Settings],
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
) -> None:
    settings = webhook_settings(webhook_retry_schedule="1,30")
    receiver.behaviour = lambda _: Reply(status=429, headers={"retry-after": "20"})
    endpoint = await create_endpoint(hooks, receiver.url, events=["email.queued"])
    async with running_worker(settings, smtp_server):
        await send_email(hooks, EMAIL)
        [attempt] = await eventually(
            lambda: _attempts(hooks, endpoint["id"]),
            lambda found: len(found) == 1,
            what="an attempt",
        )
    waited = datetime.fromisoformat(attempt["nextAttemptAt"]) - datetime.fromisoformat(
        attempt["createdAt"]
    )
    assert 19 <= waited.total_seconds() <= 21
    assert attempt["status"] == "pending" and attempt["responseCode"] == 429


async def test_retrying_and_failed_carry_the_error(
    hooks: httpx.AsyncClient,
    local_settings: Settings,
    smtp_server: SmtpTestServer,
    receiver: WebhookReceiver,
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url, events=["email.retrying", "email.failed"])
    smtp_server.handler.data_replies.extend(["451 4.3.0 Try later", "550 5.1.1 No such user"])
    async with running_worker(local_settings, smtp_server):
        await send_email(hooks, EMAIL)
        await eventually(lambda: _aw(receiver), lambda n: n >= 2, what="two events")
    retrying, failed = (verified(endpoint["secret"], r) for r in receiver.received)
    assert retrying["type"] == "email.retrying"
    assert retrying["data"]["status"] == "retrying" and retrying["data"]["attempt"] == 1
    assert retrying["data"]["error"] == {
        "code": 451,
        "enhancedCode": "4.3.0",
        "message": "Try later",
    }
    assert retrying["data"]["nextAttemptAt"] is not None
    assert failed["type"] == "email.failed" and failed["data"]["attempt"] == 2
    assert failed["data"]["error"]["code"] == 550
