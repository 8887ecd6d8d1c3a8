"""Test sends, secret rotation with overlap, the deliveries log, replays, SSRF at send time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client
from tests.support.api_calls import create_endpoint
from tests.support.webhook_receiver import Reply, WebhookReceiver

ATTEMPT_KEYS = {
    "eventId",
    "eventType",
    "attempt",
    "status",
    "responseCode",
    "durationMs",
    "responseBody",
    "error",
    "createdAt",
    "nextAttemptAt",
}


async def _test(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    response = await client.post(f"/webhooks/{endpoint_id}/test")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_test_event_is_sent_now_and_its_outcome_returned(
    hooks: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    outcome = await _test(hooks, endpoint["id"])
    assert set(outcome) == ATTEMPT_KEYS
    assert outcome["eventType"] == "webhook.test" and outcome["status"] == "succeeded"
    assert outcome["responseCode"] == 200 and outcome["responseBody"] == "ok"
    [request] = receiver.received
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhookId"] == endpoint["id"]
    assert request.headers["webhook-id"] == outcome["eventId"]

    receiver.behaviour = lambda _: Reply(status=503, body=b"busy")
    failed = await _test(hooks, endpoint["id"])
    assert failed["status"] == "pending" and failed["responseCode"] == 503
    assert failed["responseBody"] == "busy" and failed["nextAttemptAt"] is not None


async def test_rotation_signs_with_both_secrets_until_the_old_one_expires(
    hooks: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    old = endpoint["secret"]
    new = (await hooks.post(f"/webhooks/{endpoint['id']}/rotate-secret")).json()["secret"]
    await _test(hooks, endpoint["id"])
    request = receiver.received[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver with either secret accepts it
        Webhook(secret).verify(request.body, request.headers)

    newer = await hooks.post(
        f"/webhooks/{endpoint['id']}/rotate-secret", params={"expireOldNow": "true"}
    )
    newest = newer.json()["secret"]
    await _test(hooks, endpoint["id"])
    request = receiver.received[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    Webhook(newest).verify(request.body, request.headers)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(request.body, request.headers)


async def test_the_deliveries_log_pages_and_filters(
    hooks: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    for _ in range(3):
        await _test(hooks, endpoint["id"])
    receiver.behaviour = lambda _: Reply(status=500)
    await _test(hooks, endpoint["id"])
    url = f"/webhooks/{endpoint['id']}/deliveries"
    first = (await hooks.get(url, params={"limit": 3})).json()
    assert first["hasMore"] is True and len(first["data"]) == 3
    assert first["data"][0]["status"] == "pending"  # newest first
    rest = (await hooks.get(url, params={"limit": 3, "cursor": first["nextCursor"]})).json()
    assert rest["hasMore"] is False and rest["nextCursor"] is None and len(rest["data"]) == 1
    succeeded = (await hooks.get(url, params={"status": "succeeded"})).json()["data"]
    assert len(succeeded) == 3 and all(a["status"] == "succeeded" for a in succeeded)
    assert (await hooks.get(url, params={"eventType": "email.sent"})).json()["data"] == []
    assert_error(await hooks.get(url, params={"cursor": "nope"}), 422, "validation_error")
    assert_error(await hooks.get(url, params={"status": "odd"}), 422, "validation_error")


async def test_replay_by_time_and_bad_replays(
    hooks: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    sent = await hooks.post("/send", json={"to": "a@example.com", "subject": "s", "text": "t"})
    email = (await hooks.get(f"/emails/{sent.json()['id']}")).json()
    url = f"/webhooks/{endpoint['id']}/replay"
    replayed = await hooks.post(url, json={"since": email["createdAt"]})
    assert replayed.status_code == 202 and replayed.json() == {"replayed": 1}
    later = await hooks.post(url, json={"until": email["createdAt"]})
    assert later.json() == {"replayed": 0}
    assert_error(await hooks.post(url, json={}), 422, "validation_error")
    assert_error(
        await hooks.post(url, json={"since": email["createdAt"], "until": email["createdAt"]}),
        422,
        "validation_error",
    )
    assert_error(
        await hooks.post(
            "/webhooks/00000000-0000-4000-8000-000000000000/replay",
            json={"since": email["createdAt"]},
        ),
        404,
        "not_found",
    )


async def test_a_private_address_is_refused_at_send_time(
    hooks: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    api_key: str,
    receiver: WebhookReceiver,
) -> None:
    # Created while private addresses were allowed; the send checks again.
    endpoint = await create_endpoint(hooks, receiver.url)
    strict = settings_factory(webhook_allow_http=True)
    async with api_client(strict, key=api_key) as client:
        outcome = await _test(client, endpoint["id"])
    assert outcome["responseCode"] is None
    assert "Refused destination" in outcome["error"] and "loopback" in outcome["error"]
    assert receiver.received == []


async def test_a_disabled_endpoint_is_not_tested(
    hooks: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    endpoint = await create_endpoint(hooks, receiver.url)
    await hooks.patch(f"/webhooks/{endpoint['id']}", json={"enabled": False})
    assert_error(await hooks.post(f"/webhooks/{endpoint['id']}/test"), 409, "conflict")
    assert receiver.received == []
