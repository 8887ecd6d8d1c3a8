"""The dashboard's providers page: each provider's limits and breaker, never a password."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.settings import Settings
from mailroom.transport.pacing import breakers_key
from mailroom.worker.runner import DeliveryWorker
from tests.api.dashboard.conftest import sign_in
from tests.conftest import api_client, make_key
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

PROVIDERS = (
    "smtp://alice:hunter2secret@relay-a.example.com:2525?security=starttls&name=primary"
    "&weight=3&rate=10/second&daily=5000,"
    " smtp://relay-b.example.com:587?security=none&name=spare"
)


@pytest.fixture
async def client(
    settings_factory: Callable[..., Settings], clean: None
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_factory(smtp_providers=PROVIDERS)) as running:
        yield running


async def test_the_providers_page_shows_limits_and_breakers_never_a_password(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: redis.Redis,
    settings_factory: Callable[..., Settings],
) -> None:
    prefix = settings_factory().queue_prefix
    await redis_client.hset(breakers_key(prefix), mapping={"primary": "open"})  # type: ignore[misc]
    await sign_in(client, await make_key(sessions, (Scope.LOGS_READ,)))
    overview = await client.get("/dashboard")
    assert 'href="/dashboard/providers"' in overview.text
    page = await client.get("/dashboard/providers")
    assert page.status_code == 200
    assert "hunter2secret" not in page.text
    assert "cannot be read" not in page.text
    assert "<code>relay-a.example.com:2525</code>" in page.text
    assert "10/second" in page.text and "5000" in page.text
    assert '<td class="num">3</td>' in page.text
    assert '<span class="badge s-failed">open</span>' in page.text
    assert "<td>spare</td>" in page.text and "<code>relay-b.example.com:587</code>" in page.text
    assert "unknown (no worker reported it)" in page.text
    assert page.headers["x-frame-options"] == "DENY"


async def test_without_logs_read_the_providers_page_is_refused(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A key without logs:read cannot sign in at all: the page sends it to the form.
    await sign_in(client, await make_key(sessions, (Scope.SEND,)))
    page = await client.get("/dashboard/providers")
    assert page.status_code in (303, 307)
    assert "/dashboard/login" in page.headers["location"]


async def test_the_providers_page_counts_todays_attempts_of_a_real_worker(
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    clean: None,
) -> None:
    # Two relays, each for its own sender domain; the second refuses one recipient for good.
    relays = [SmtpTestServer(), SmtpTestServer()]
    for relay in relays:
        await relay.start()
    relays[1].handler.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
    providers = ", ".join(
        f"smtp://{r.host}:{r.port}?security=none&name={name}&from=@{name}.example"
        for r, name in zip(relays, ("first", "second"), strict=True)
    )
    settings = settings_factory(smtp_providers=providers)
    key = await make_key(sessions)
    sends = [("first", "a@example.com")] * 3 + [
        ("second", "b@example.com"),
        ("second", "gone@example.com"),
    ]
    try:
        async with api_client(settings) as client, DeliveryWorker(settings, concurrency=5):
            auth = {"Authorization": f"Bearer {key}"}
            ids = []
            for domain, to in sends:
                email = {"from": f"app@{domain}.example", "to": to, "subject": "s", "text": "t"}
                answer = await client.post("/send", json=email, headers=auth)
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])

            async def statuses() -> list[str]:
                found = [await client.get(f"/emails/{i}", headers=auth) for i in ids]
                return [f.json()["status"] for f in found]

            final = await eventually(
                statuses, lambda s: "queued" not in s and "sending" not in s, what="all final"
            )
            assert final == ["sent"] * 4 + ["failed"]
            await sign_in(client, key)
            page = await client.get("/dashboard/providers")
    finally:
        for relay in relays:
            await relay.stop()
    assert page.status_code == 200
    number = r'\s*<td class="num">(\d+)</td>'
    counts = re.findall(
        rf"<td>(first|second)</td>.*?{number}{number}{number}\s*</tr>", page.text, re.DOTALL
    )
    assert counts == [("first", "3", "0", "0"), ("second", "1", "1", "0")]
