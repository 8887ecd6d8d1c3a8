"""The suppression list through the real app: its routes, and what sending does with it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.projects.service import create_project
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client, make_key


async def _add(client: httpx.AsyncClient, *addresses: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/suppressions", json={"addresses": list(addresses), **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _send(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi"}
    body.update(fields)
    return await client.post("/send", json=body)


async def test_add_get_list_and_remove(client: httpx.AsyncClient) -> None:
    added = await _add(client, "Jane@Example.COM", "carl@example.com")
    assert added["added"] == 2
    assert {i["address"] for i in added["data"]} == {"Jane@example.com", "carl@example.com"}
    item = added["data"][0]
    assert set(item) == {"address", "reason", "emailId", "createdAt", "expiresAt"}
    assert item["reason"] == "manual" and item["emailId"] is None and item["expiresAt"] is None

    # The domain in any case; the local part exactly.
    found = await client.get("/suppressions/Jane@EXAMPLE.com")
    assert found.status_code == 200, found.text
    assert found.json()["address"] == "Jane@example.com"
    assert_error(await client.get("/suppressions/jane@example.com"), 404, "not_found")

    page = (await client.get("/suppressions")).json()
    assert [i["address"] for i in page["data"]] == ["carl@example.com", "Jane@example.com"] or [
        i["address"] for i in page["data"]
    ] == ["Jane@example.com", "carl@example.com"]
    assert page["pagination"] == {"limit": 50, "hasMore": False, "nextCursor": None}

    deleted = await client.delete("/suppressions/jane@Example.com")
    assert_error(deleted, 404, "not_found")  # not the same local part
    deleted = await client.delete("/suppressions/Jane@example.com")
    assert deleted.status_code == 204
    assert_error(await client.get("/suppressions/Jane@example.com"), 404, "not_found")
    assert_error(await client.delete("/suppressions/Jane@example.com"), 404, "not_found")


async def test_paging_by_cursor_reason_and_search(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await _add(client, f"user{n}@example.com")
    await _add(client, "gone@example.org", reason="unsubscribe")

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/suppressions", params=params)).json()
        seen += [i["address"] for i in page["data"]]
        cursor = page["pagination"]["nextCursor"]
        if not page["pagination"]["hasMore"]:
            assert cursor is None
            break
    assert seen[0] == "gone@example.org"  # newest first
    assert sorted(seen) == sorted([*(f"user{n}@example.com" for n in range(5)), "gone@example.org"])

    only = (await client.get("/suppressions", params={"reason": "unsubscribe"})).json()["data"]
    assert [i["address"] for i in only] == ["gone@example.org"]
    searched = (await client.get("/suppressions", params={"q": "USER3"})).json()["data"]
    assert [i["address"] for i in searched] == ["user3@example.com"]
    percent = (await client.get("/suppressions", params={"q": "%"})).json()["data"]
    assert percent == []

    assert_error(
        await client.get("/suppressions", params={"cursor": "nope"}), 422, "validation_error"
    )
    assert_error(await client.get("/suppressions", params={"reason": "x"}), 422, "validation_error")
    assert_error(await client.get("/suppressions", params={"limit": 0}), 422, "validation_error")


async def test_bad_additions_are_refused_with_the_field(client: httpx.AsyncClient) -> None:
    too_many = [f"u{n}@example.com" for n in range(1001)]
    bodies: list[dict[str, Any]] = [
        {"addresses": []},
        {"addresses": too_many},
        {"addresses": ["not an address"]},
        {"addresses": ["a@example.com, b@example.com"]},
        {"addresses": ["a@example.com"], "reason": "hard_bounce"},
        {"addresses": ["a@example.com"], "expiresAt": "2020-01-01T00:00:00Z"},
        {"addresses": ["a@example.com"], "expiresAt": "2030-01-01T00:00:00"},
        {"addresses": ["a@example.com"], "extra": 1},
    ]
    for body in bodies:
        response = await client.post("/suppressions", json=body)
        assert_error(response, 422, "validation_error")
    assert (await client.get("/suppressions")).json()["data"] == []


async def test_an_expiring_entry_stops_suppressing_once_expired(client: httpx.AsyncClient) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    await _add(client, "jane@example.com", expiresAt=soon.isoformat())
    accepted = (await _send(client)).json()
    assert accepted["status"] == "suppressed"
    # Renewed for good: a permanent entry replaces one that expires.
    renewed = await _add(client, "jane@example.com")
    assert renewed["added"] == 1 and renewed["data"][0]["expiresAt"] is None
    # A permanent entry keeps its first cause.
    again = await _add(client, "jane@example.com", reason="unsubscribe")
    assert again["added"] == 0
    item = (await client.get("/suppressions/jane@example.com")).json()
    assert item["reason"] == "manual"


async def test_scopes(
    settings: Settings, clean: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reader = await make_key(sessions, (Scope.LOGS_READ, Scope.SEND))
    async with api_client(settings, key=reader) as client:
        assert (await client.get("/suppressions")).status_code == 200
        denied = await client.post("/suppressions", json={"addresses": ["a@example.com"]})
        assert_error(denied, 403, "forbidden")
        assert_error(await client.delete("/suppressions/a@example.com"), 403, "forbidden")
        ignoring = await _send(client, ignoreSuppressions=True)
        assert_error(ignoring, 403, "forbidden")
        batch = await client.post(
            "/send/batch",
            json={
                "emails": [
                    {"to": "a@example.com", "subject": "s", "text": "t", "ignoreSuppressions": True}
                ]
            },
        )
        assert_error(batch, 422, "validation_error")
    sender = await make_key(sessions, (Scope.SEND,))
    async with api_client(settings, key=sender) as client:
        assert_error(await client.get("/suppressions"), 403, "forbidden")
    async with api_client(settings) as client:
        assert_error(await client.get("/suppressions"), 401, "unauthorized")


async def test_sending_leaves_suppressed_recipients_out(client: httpx.AsyncClient) -> None:
    await _add(client, "Jane@example.com")
    response = await _send(
        client, to=["Jane Doe <Jane@EXAMPLE.com>", "carl@example.com"], cc="jane@example.org"
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert accepted["suppressed"] == ["Jane@example.com"]
    detail = (await client.get(f"/emails/{accepted['id']}")).json()
    assert detail["suppressed"] == ["Jane@example.com"]
    assert len(detail["to"]) == 2  # the headers still name every recipient

    # The local part is exact: "jane@" is another mailbox.
    other = (await _send(client, to="jane@example.com")).json()
    assert other["status"] == "queued" and other["suppressed"] == []


async def test_every_recipient_suppressed_is_stored_suppressed_and_never_queued(
    client: httpx.AsyncClient,
) -> None:
    await _add(client, "jane@example.com", "carl@example.com")
    for extra in ({}, {"attachments": [{"filename": "a.txt", "content": "aGk="}]}):
        response = await _send(client, to=["jane@example.com"], bcc="carl@example.com", **extra)
        accepted = response.json()
        assert accepted["status"] == "suppressed", accepted
        assert accepted["suppressed"] == ["carl@example.com", "jane@example.com"]
        detail = (await client.get(f"/emails/{accepted['id']}")).json()
        assert detail["status"] == "suppressed" and detail["nextAttemptAt"] is None

    log = (await client.get("/logs/email", params={"status": "suppressed"})).json()
    assert len(log["data"]) == 2
    assert log["summary"]["suppressed"] == 2 and log["summary"]["pending"] == 0

    # With suppressions:write a request may go anyway.
    forced = (await _send(client, ignoreSuppressions=True)).json()
    assert forced["status"] == "queued" and forced["suppressed"] == []

    # A sandbox request is checked the same way.
    sandboxed = await client.post(
        "/send",
        json={"to": "jane@example.com", "subject": "s", "text": "t"},
        headers={"X-Sandbox": "true"},
    )
    assert sandboxed.json()["status"] == "suppressed"


async def test_idempotent_replay_keeps_the_suppressed_answer(client: httpx.AsyncClient) -> None:
    await _add(client, "jane@example.com")
    headers = {"Idempotency-Key": "k-1"}
    body = {"to": ["jane@example.com", "carl@example.com"], "subject": "s", "text": "t"}
    first = await client.post("/send", json=body, headers=headers)
    await client.delete("/suppressions/jane@example.com")
    second = await client.post("/send", json=body, headers=headers)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert first.json()["suppressed"] == ["jane@example.com"]


async def test_a_batch_reads_the_list_once_and_answers_per_email(
    client: httpx.AsyncClient,
) -> None:
    await _add(client, "jane@example.com")
    response = await client.post(
        "/send/batch",
        json={
            "emails": [
                {"to": "jane@example.com", "subject": "s", "text": "t"},
                {"to": ["jane@example.com", "carl@example.com"], "subject": "s", "text": "t"},
                {"to": "carl@example.com", "subject": "s", "text": "t"},
                {"to": "jane@example.com", "subject": "s", "text": "t", "ignoreSuppressions": True},
            ]
        },
    )
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert [d["status"] for d in data] == ["suppressed", "queued", "queued", "queued"]
    assert [d.get("suppressed") for d in data] == [
        ["jane@example.com"],
        ["jane@example.com"],
        None,
        None,
    ]


@pytest.mark.parametrize("scope", ["global", "project"])
async def test_the_list_is_per_project_unless_global(
    settings_factory: Any,
    clean: None,
    sessions: async_sessionmaker[AsyncSession],
    api_key: str,
    scope: str,
) -> None:
    name = f"other-{secrets.token_hex(4)}"
    async with sessions() as session:
        await create_project(session, name)
        _, other_key = await create_key(session, name=name, scopes=tuple(Scope), project=name)
        await session.commit()
    settings = settings_factory(suppression_scope=scope)
    async with api_client(settings, key=api_key) as client:
        await _add(client, "jane@example.com")
    async with api_client(settings, key=other_key) as client:
        status = (await _send(client)).json()["status"]
        listed = (await client.get("/suppressions")).json()["data"]
    if scope == "global":
        assert status == "suppressed" and len(listed) == 1
    else:
        assert status == "queued" and listed == []
