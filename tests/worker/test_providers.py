"""Several providers end to end: API → worker → SMTP_PROVIDERS relays → log, with faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from mailroom.worker.runner import DeliveryWorker
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
async def relays() -> AsyncIterator[list[SmtpTestServer]]:
    started = [SmtpTestServer() for _ in range(3)]
    for server in started:
        await server.start()
    yield started
    for server in started:
        await server.stop()


def providers_setting(relays: list[SmtpTestServer], *extra: str) -> str:
    urls = [
        f"smtp://{s.host}:{s.port}?security=none&name=relay{i}{extra[i] if extra else ''}"
        for i, s in enumerate(relays)
    ]
    return ", ".join(urls)


async def _statuses(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    found = []
    for email_id in ids:
        response = await client.get(f"/emails/{email_id}")
        assert response.status_code == 200, response.text
        found.append(response.json())
    return found


async def test_a_relay_down_mid_run_loses_no_email(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    relays: list[SmtpTestServer],
) -> None:
    settings = settings_factory(smtp_providers=providers_setting(relays))
    ids: list[str] = []

    async def send(n: int) -> None:
        for i in range(n):
            response = await client.post(
                "/send", json={"to": f"u{i}@example.com", "subject": "s", "text": "t"}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

    async with DeliveryWorker(settings, concurrency=10):
        await send(30)
        await eventually(
            lambda: _statuses(client, ids),
            lambda found: all(e["status"] == "sent" for e in found),
            what="the first emails sent",
        )
        relays[1].handler.close_after_data = True
        await relays[1].stop()
        await send(60)
        emails = await eventually(
            lambda: _statuses(client, ids),
            lambda found: all(e["status"] in ("sent", "failed") for e in found),
            timeout=30,
            what="every email sent",
        )
    assert [e["status"] for e in emails] == ["sent"] * 90
    delivered = sum(len(r.handler.messages()) for r in relays)
    assert delivered == 90
    providers = {a["provider"] for e in emails for a in e["deliveryAttempts"]}
    assert providers == {"relay0", "relay1", "relay2"}
    for e in emails[30:]:
        last = e["deliveryAttempts"][-1]
        assert last["provider"] in ("relay0", "relay2") or len(e["deliveryAttempts"]) == 1
    log = (await client.get("/logs/email", params={"provider": "relay0"})).json()
    assert 0 < len(log["data"]) < 90


async def test_a_paced_email_waits_unchanged_with_no_attempt(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    relays: list[SmtpTestServer],
) -> None:
    url = f"smtp://{relays[0].host}:{relays[0].port}?security=none&name=slow&rate=1/minute"
    settings = settings_factory(smtp_providers=url)
    ids = []
    async with DeliveryWorker(settings, concurrency=5):
        for i in range(3):
            response = await client.post(
                "/send", json={"to": f"u{i}@example.com", "subject": "s", "text": "t"}
            )
            ids.append(response.json()["id"])
        emails = await eventually(
            lambda: _statuses(client, ids),
            lambda found: (
                sorted(e["status"] for e in found) == ["queued", "queued", "sent"]
                and all(e["nextAttemptAt"] for e in found if e["status"] == "queued")
            ),
            what="one sent, two paced",
        )
        await asyncio.sleep(0)
    waiting = [e for e in emails if e["status"] == "queued"]
    assert all(e["attempts"] == 0 and e["deliveryAttempts"] == [] for e in waiting)
    # Handed back unsent: nothing a webhook receiver has to hear about again.
    assert all([event["type"] for event in e["events"]] == ["email.queued"] for e in waiting)
    assert len(relays[0].handler.messages()) == 1
