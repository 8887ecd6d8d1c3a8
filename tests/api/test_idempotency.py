"""Idempotency-Key on POST /send: replays, conflicts, concurrency, expiry."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails.idempotency import MAX_KEY_LENGTH, request_fingerprint
from mailroom.settings import Settings
from tests.conftest import api_client, make_key

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}


def _new_key() -> str:
    return f"order-{secrets.token_hex(8)}"


async def _send(
    client: httpx.AsyncClient, body: Any = None, key: str | bytes | None = None
) -> httpx.Response:
    headers: list[tuple[bytes, bytes]] = []
    if key is not None:
        headers.append((b"Idempotency-Key", key if isinstance(key, bytes) else key.encode()))
    return await client.post("/send", json=VALID if body is None else body, headers=headers)


async def _total(client: httpx.AsyncClient) -> int:
    response = await client.get("/logs/email")
    assert response.status_code == 200, response.text
    total: int = response.json()["pagination"]["total"]
    return total


def _accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_same_key_and_body_replay_the_first_response(
    client: httpx.AsyncClient,
) -> None:
    key = _new_key()
    first = await _send(client, key=key)
    second = await _send(client, key=key)

    original = _accepted(first)
    replay = _accepted(second)
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert replay == original
    assert {"id", "messageId", "createdAt", "status"} <= set(replay)
    assert await _total(client) == 1


async def test_a_replay_is_judged_on_the_request_not_its_spelling(
    client: httpx.AsyncClient,
) -> None:
    key = _new_key()
    original = _accepted(await _send(client, VALID, key))
    # The same request with its fields in another order.
    reordered = dict(reversed(list(VALID.items())))
    replay = await _send(client, reordered, key)
    assert _accepted(replay) == original
    assert replay.headers["Idempotent-Replayed"] == "true"
    # One recipient as a string or as a list of one is the same request.
    as_list = await _send(client, {**VALID, "to": [VALID["to"]]}, key)
    assert _accepted(as_list) == original
    assert await _total(client) == 1


async def test_the_same_key_with_another_body_is_refused(client: httpx.AsyncClient) -> None:
    key = _new_key()
    original = _accepted(await _send(client, key=key))
    response = await _send(client, {**VALID, "subject": "Something else"}, key)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["message"]
    assert [d["field"] for d in error["details"]] == ["Idempotency-Key"]
    assert "Idempotent-Replayed" not in response.headers
    assert await _total(client) == 1
    # The original still replays.
    assert _accepted(await _send(client, key=key)) == original


async def test_keys_are_per_api_key(
    client: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = _new_key()
    first = _accepted(await _send(client, key=key))
    other_api_key = await make_key(sessions)
    async with api_client(settings, key=other_api_key) as other:
        response = await _send(other, key=key)
        second = _accepted(response)
        assert "Idempotent-Replayed" not in response.headers
        # A different body is fine too: it is another caller's key.
        third = await _send(other, {**VALID, "subject": "Other"}, _new_key())
        assert third.status_code == 202
    assert second["id"] != first["id"]
    assert second["messageId"] != first["messageId"]
    assert await _total(client) == 3


async def test_concurrent_requests_with_one_key_create_one_email(
    client: httpx.AsyncClient,
) -> None:
    key = _new_key()
    responses = await asyncio.gather(*(_send(client, key=key) for _ in range(20)))

    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert all(body == bodies[0] for body in bodies), bodies
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == 19
    assert replayed.count(None) == 1
    assert await _total(client) == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * (MAX_KEY_LENGTH + 1), id="256-chars"),
        pytest.param("order\t1", id="tab"),
        pytest.param("clé".encode(), id="non-ascii"),
        pytest.param(b"order\x7f1", id="delete-char"),
    ],
)
async def test_an_invalid_key_is_a_validation_error(
    client: httpx.AsyncClient, key: str | bytes
) -> None:
    response = await _send(client, key=key)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "Idempotency-Key" in [d["field"] for d in error["details"]]
    assert await _total(client) == 0


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * MAX_KEY_LENGTH, id="255-chars"),
        pytest.param("a", id="one-char"),
        pytest.param("order 1234/receipt~!", id="printable-punctuation"),
    ],
)
async def test_a_valid_key_at_the_edges_is_accepted(client: httpx.AsyncClient, key: str) -> None:
    first = _accepted(await _send(client, key=key))
    replay = await _send(client, key=key)
    assert _accepted(replay) == first
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_a_record_older_than_24_hours_no_longer_replays(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = _new_key()
    first = _accepted(await _send(client, key=key))
    async with sessions() as session:
        aged = await session.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                "WHERE key = :key"
            ),
            {"key": key},
        )
        await session.commit()
    assert aged.rowcount == 1  # type: ignore[attr-defined]

    response = await _send(client, key=key)
    second = _accepted(response)
    assert "Idempotent-Replayed" not in response.headers
    assert second["id"] != first["id"]
    assert await _total(client) == 2
    # The fresh record replays from now on.
    assert _accepted(await _send(client, key=key)) == second
    assert await _total(client) == 2


async def test_a_record_just_under_24_hours_still_replays(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = _new_key()
    first = _accepted(await _send(client, key=key))
    async with sessions() as session:
        await session.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '23 hours' "
                "WHERE key = :key"
            ),
            {"key": key},
        )
        await session.commit()
    assert _accepted(await _send(client, key=key)) == first
    assert await _total(client) == 1


async def test_without_the_header_identical_requests_are_separate_emails(
    client: httpx.AsyncClient,
) -> None:
    first = _accepted(await _send(client))
    second = _accepted(await _send(client))
    assert first["id"] != second["id"]
    assert await _total(client) == 2


async def test_a_refused_request_does_not_claim_the_key(client: httpx.AsyncClient) -> None:
    key = _new_key()
    invalid = await _send(client, {"to": "not an address", "subject": "x", "text": "y"}, key)
    assert invalid.status_code == 422
    # The key is still free for the corrected request.
    response = await _send(client, key=key)
    _accepted(response)
    assert "Idempotent-Replayed" not in response.headers
    assert await _total(client) == 1


# -- the helpers -----------------------------------------------------------------------


def test_the_fingerprint_ignores_key_order() -> None:
    one = {"to": ["a@example.com"], "subject": "S", "headers": {"X-A": "1", "X-B": "2"}}
    two = {"headers": {"X-B": "2", "X-A": "1"}, "subject": "S", "to": ["a@example.com"]}
    assert request_fingerprint(one) == request_fingerprint(two)
    assert len(request_fingerprint(one)) == 64
    int(request_fingerprint(one), 16)


@pytest.mark.parametrize(
    "changed",
    [
        {"subject": "T"},
        {"to": ["b@example.com"]},
        {"to": ["a@example.com", "b@example.com"]},
        {"headers": {"X-A": "1"}},
        {"text": "body"},
    ],
)
def test_the_fingerprint_sees_every_change(changed: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "to": ["a@example.com"],
        "subject": "S",
        "headers": {"X-A": "1", "X-B": "2"},
    }
    assert request_fingerprint(base) != request_fingerprint({**base, **changed})


def test_the_fingerprint_keeps_list_order_and_unicode_apart() -> None:
    assert request_fingerprint({"to": ["a", "b"]}) != request_fingerprint({"to": ["b", "a"]})
    assert request_fingerprint({"subject": "é"}) != request_fingerprint({"subject": "e"})
