"""Bounded work per request: lists refused by their length before any item is validated,
error details cut to the first 20, and no single request holding the event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.errors import MAX_DETAILS
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import make_key
from tests.support.live_server import LiveServer, serving

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}


async def _stored(client: httpx.AsyncClient) -> int:
    total: int = (await client.get("/logs/email")).json()["pagination"]["total"]
    return total


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "replyTo"])
async def test_a_list_of_100_000_addresses_is_refused_by_its_length(
    client: httpx.AsyncClient, field: str
) -> None:
    body = {**VALID, field: ["bad"] * 100_000}
    started = time.perf_counter()
    response = await client.post("/send", json=body)
    elapsed = time.perf_counter() - started
    error = assert_error(response, 422, "validation_error")
    assert len(error["details"]) == 1, error
    # to, cc and bcc are counted together (with the one "to"), replyTo on its own.
    assert error["details"][0]["message"].endswith(("(100000 given)", "(100001 given)"))
    assert len(response.content) < 1024
    assert elapsed < 2, elapsed  # ~30 ms; validating each address took seconds
    assert await _stored(client) == 0


@pytest.mark.parametrize(
    ("field", "items"),
    [
        ("headers", {f"X-H{n}": "v" for n in range(10_000)}),
        ("attachments", [{"filename": "a.txt", "content": "aGk="}] * 10_000),
    ],
)
async def test_other_lists_are_refused_by_their_length(
    client: httpx.AsyncClient, field: str, items: object
) -> None:
    response = await client.post("/send", json={**VALID, field: items})
    error = assert_error(response, 422, "validation_error")
    assert [d["field"] for d in error["details"]] == [field]
    assert "10000 given" in error["details"][0]["message"]


async def test_the_recipient_limit_is_counted_before_any_address_is_validated(
    client: httpx.AsyncClient,
) -> None:
    body = {**VALID, "to": ["bad"] * 30, "cc": ["bad"] * 30}
    error = assert_error(await client.post("/send", json=body), 422, "validation_error")
    assert len(error["details"]) == 1
    assert "at most 50 recipients" in error["details"][0]["message"]


async def test_details_list_the_first_20_problems_and_count_them_all(
    client: httpx.AsyncClient,
) -> None:
    body = {**VALID, "to": [f"bad-{n}" for n in range(30)], "cc": ["bad"] * 10}
    response = await client.post("/send", json=body)
    error = assert_error(response, 422, "validation_error")
    assert len(error["details"]) == MAX_DETAILS
    assert error["detailsTotal"] == 40
    assert error["details"][0]["field"] == "to[0]"
    assert error["message"].endswith("(and 39 more)")


async def test_a_batch_of_500_emails_of_2000_bad_addresses_is_answered_small_and_fast(
    client: httpx.AsyncClient,
) -> None:
    email = {**VALID, "to": ["bad"] * 2000}
    started = time.perf_counter()
    response = await client.post("/send/batch", json={"emails": [email] * 500})
    elapsed = time.perf_counter() - started
    error = assert_error(response, 422, "validation_error")
    assert len(error["details"]) == MAX_DETAILS
    assert error["detailsTotal"] == 500
    assert len(response.content) < 8 * 1024
    assert elapsed < 5, elapsed  # it took 31 s and answered 106 MB


async def test_each_rejected_batch_item_lists_at_most_20_problems(
    client: httpx.AsyncClient,
) -> None:
    bad = {**VALID, "to": [f"bad-{n}" for n in range(25)]}
    response = await client.post("/send/batch", json={"emails": [VALID, bad]})
    assert response.status_code == 202, response.text
    error = response.json()["data"][1]["error"]
    assert len(error["details"]) == MAX_DETAILS
    assert error["detailsTotal"] == 25


# -- the 7 MB request, against a real server --------------------------------------------------


@pytest.fixture(scope="module")
async def live_server(database_url: str, namespace: str) -> AsyncIterator[LiveServer]:
    from tests.conftest import make_settings

    async with serving(make_settings(database_url, namespace)) as server:
        yield server


async def test_a_million_addresses_are_refused_at_once_while_health_answers(
    live_server: LiveServer, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    key = await make_key(sessions)
    body = json.dumps({**VALID, "to": ["bad"] * 1_000_000}).encode()
    assert len(body) > 7_000_000
    health_latencies: list[float] = []
    done = asyncio.Event()

    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as http:

        async def poll_health() -> None:
            while not done.is_set():
                started = time.perf_counter()
                assert (await http.get("/health")).status_code == 200
                health_latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll_health())
        started = time.perf_counter()
        response = await http.post(
            "/send",
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        elapsed = time.perf_counter() - started
        done.set()
        await poller

    error = assert_error(response, 422, "validation_error")
    assert "1000000 given" in error["details"][0]["message"]
    assert len(response.content) < 1024
    # Measured well under 100 ms on a quiet machine (see the report); loose here, as the
    # test shares 2 cores with everything else. It took 48 s.
    assert elapsed < 1.5, elapsed
    assert health_latencies and max(health_latencies) < 1.5, health_latencies
