"""The endpoint routes: create, list, get, change, delete, rotate; validation; scopes."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.projects.models import Project
from mailroom.projects.service import create_project
from mailroom.settings import Settings
from mailroom.webhooks.events import EMAIL_EVENT_TYPES
from tests.api.shapes import assert_error
from tests.conftest import api_client, make_key
from tests.support.api_calls import create_endpoint

KEYS = {"id", "url", "events", "description", "enabled", "disabledReason", "createdAt"}


async def test_create_returns_the_secret_once_and_defaults_to_every_event(
    hooks: httpx.AsyncClient,
) -> None:
    created = await create_endpoint(hooks, "https://hooks.example.com/a", description="CRM")
    assert set(created) == KEYS | {"secret"}
    assert created["url"] == "https://hooks.example.com/a"
    assert created["events"] == list(EMAIL_EVENT_TYPES)
    assert created["enabled"] is True and created["description"] == "CRM"
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32

    listed = (await hooks.get("/webhooks")).json()
    assert listed == {"data": [{k: v for k, v in created.items() if k != "secret"}]}
    one = await hooks.get(f"/webhooks/{created['id']}")
    assert one.status_code == 200 and "secret" not in one.json()


async def test_patch_and_delete(hooks: httpx.AsyncClient) -> None:
    created = await create_endpoint(hooks, "https://hooks.example.com/a", events=["email.sent"])
    assert created["events"] == ["email.sent"]
    changed = await hooks.patch(
        f"/webhooks/{created['id']}",
        json={"events": ["email.failed", "email.sent"], "enabled": False, "description": None},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["email.failed", "email.sent"]
    assert changed.json()["enabled"] is False
    deleted = await hooks.delete(f"/webhooks/{created['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": created["id"], "deleted": True}
    assert_error(await hooks.get(f"/webhooks/{created['id']}"), 404, "not_found")
    assert_error(await hooks.delete(f"/webhooks/{created['id']}"), 404, "not_found")
    assert_error(await hooks.get("/webhooks/not-a-uuid"), 404, "not_found")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/relative/path", "absolute"),
        ("ftp://hooks.example.com/x", "https"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com/" + "a" * 2048, "2048"),
        ("http://hooks.example.com/x", "https"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://10.1.2.3/x", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://[::1]/x", "loopback"),
        ("https://localhost/x", "internal"),
    ],
)
async def test_refused_urls_are_422_naming_the_reason(
    settings_factory: Callable[..., Settings], clean: None, api_key: str, url: str, reason: str
) -> None:
    async with api_client(settings_factory(), key=api_key) as client:
        body = assert_error(
            await client.post("/webhooks", json={"url": url}), 422, "validation_error"
        )
    assert body["details"][0]["field"] == "url"
    assert reason in body["message"]


async def test_http_and_private_urls_are_allowed_when_configured(hooks: httpx.AsyncClient) -> None:
    created = await create_endpoint(hooks, "http://127.0.0.1:9/hooks")
    assert created["url"] == "http://127.0.0.1:9/hooks"


async def test_an_unknown_event_type_is_422_listing_the_known_ones(
    hooks: httpx.AsyncClient,
) -> None:
    body = assert_error(
        await hooks.post(
            "/webhooks", json={"url": "https://a.example.com", "events": ["email.opened"]}
        ),
        422,
        "validation_error",
    )
    assert "email.opened" in body["message"]
    assert all(t in body["message"] for t in EMAIL_EVENT_TYPES)
    response = await hooks.patch(
        "/webhooks/00000000-0000-4000-8000-000000000000", json={"events": []}
    )
    assert_error(response, 422, "validation_error")


async def test_more_than_the_maximum_is_422(
    settings_factory: Callable[..., Settings], clean: None, api_key: str
) -> None:
    async with api_client(settings_factory(webhook_max_endpoints=2), key=api_key) as client:
        for _ in range(2):
            await create_endpoint(client, "https://hooks.example.com/x")
        body = assert_error(
            await client.post("/webhooks", json={"url": "https://hooks.example.com/x"}),
            422,
            "validation_error",
        )
    assert "WEBHOOK_MAX_ENDPOINTS" in body["message"]


async def test_the_scope_is_needed_and_projects_are_apart(
    hooks: httpx.AsyncClient,
    local_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    created = await create_endpoint(hooks, "https://hooks.example.com/a")
    without = await make_key(sessions, (Scope.SEND, Scope.LOGS_READ))
    async with api_client(local_settings, key=without) as client:
        body = assert_error(await client.get("/webhooks"), 403, "forbidden")
        assert "webhooks:write" in body["message"]
    async with sessions() as session:
        await create_project(session, f"hooks-{secrets.token_hex(4)}")
        project = (
            await session.scalars(select(Project).order_by(Project.created_at.desc()))
        ).first()
        assert project is not None
        _, other_key = await create_key(
            session, name="other", scopes=(Scope.WEBHOOKS_WRITE,), project=project.name
        )
        await session.commit()
    async with api_client(local_settings, key=other_key) as client:
        assert (await client.get("/webhooks")).json() == {"data": []}
        assert_error(await client.get(f"/webhooks/{created['id']}"), 404, "not_found")
        assert_error(await client.delete(f"/webhooks/{created['id']}"), 404, "not_found")
        assert_error(
            await client.patch(f"/webhooks/{created['id']}", json={"enabled": False}),
            404,
            "not_found",
        )
        theirs = await create_endpoint(client, "https://hooks.example.com/b")
    assert [e["id"] for e in (await hooks.get("/webhooks")).json()["data"]] == [created["id"]]
    assert theirs["id"] != created["id"]


async def test_rotation_returns_a_new_secret(hooks: httpx.AsyncClient) -> None:
    created = await create_endpoint(hooks, "https://hooks.example.com/a")
    rotated = await hooks.post(f"/webhooks/{created['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert set(rotated.json()) == {"secret"}
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]
    gone = await hooks.post("/webhooks/00000000-0000-4000-8000-000000000000/rotate-secret")
    assert_error(gone, 404, "not_found")
