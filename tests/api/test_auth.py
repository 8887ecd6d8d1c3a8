"""Bearer API keys: who may call which endpoint, revocation, and how keys are stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.app import create_app
from mailroom.auth.keys import generate_key
from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key, revoke_key
from mailroom.errors import InvalidRequest
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client, make_key, make_settings
from tests.support.live_server import LiveServer, serving
from tests.support.waiting import eventually

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}
NO_SUCH_EMAIL = "00000000-0000-0000-0000-000000000000"
PUBLIC_PATHS = frozenset({"/health", "/ready"})
# Providers' webhooks: no API key; each authenticates by its own token or signature
# (tests/feedback).
WEBHOOK_PATHS = frozenset({f"/feedback/{NO_SUCH_EMAIL}"})


async def _operations(client: httpx.AsyncClient) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path with placeholders filled, operation) for every published operation."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    operations = []
    for path, methods in response.json()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", NO_SUCH_EMAIL, path)
        for method, operation in methods.items():
            operations.append((method.upper(), concrete, operation))
    return operations


async def _key_row(sessions: async_sessionmaker[AsyncSession], key: str) -> dict[str, Any]:
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT * FROM api_keys WHERE key_hash = :digest"),
                {"digest": hashlib.sha256(key.encode()).hexdigest()},
            )
        ).one()
    return dict(row._mapping)


# -- who needs a key -------------------------------------------------------------------


async def test_every_endpoint_but_health_and_ready_needs_a_key(
    anonymous: httpx.AsyncClient,
) -> None:
    operations = await _operations(anonymous)
    protected = [(m, p) for m, p, _ in operations if p not in PUBLIC_PATHS | WEBHOOK_PATHS]
    assert {("POST", "/send"), ("GET", "/logs/email"), ("GET", f"/emails/{NO_SUCH_EMAIL}")} <= set(
        protected
    )
    for method, path in protected:
        kwargs: dict[str, Any] = {"json": VALID} if method == "POST" else {}
        response = await anonymous.request(method, path, **kwargs)
        error = assert_error(response, 401, "unauthorized")
        assert "Authorization" in error["message"], (method, path)


@pytest.mark.parametrize("path", ["/health", "/ready", "/docs", "/openapi.json", "/redoc"])
async def test_public_endpoints_answer_without_a_key(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic dXNlcjpwYXNzd29yZA==", id="basic-scheme"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("Bearer ", id="bearer-empty-token"),
        pytest.param("Bearer garbage", id="garbage-token"),
        pytest.param("Bearer " + "x" * 300, id="long-garbage"),
        pytest.param(f"Bearer mr_{'a' * 43}", id="well-formed-unknown"),
        pytest.param("Token mr_abcdefghijklmnopqrstuvwxyz", id="other-scheme"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/send"), ("GET", "/logs/email"), ("GET", f"/emails/{NO_SUCH_EMAIL}")],
)
async def test_a_bad_authorization_header_is_401(
    anonymous: httpx.AsyncClient, authorization: str, method: str, path: str
) -> None:
    kwargs: dict[str, Any] = {"json": VALID} if method == "POST" else {}
    response = await anonymous.request(
        method, path, headers={"Authorization": authorization}, **kwargs
    )
    assert_error(response, 401, "unauthorized")


async def test_an_unknown_freshly_generated_key_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/send", json=VALID, headers={"Authorization": f"Bearer {generate_key()}"}
    )
    assert_error(response, 401, "unauthorized")


async def test_a_valid_key_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await client.post("/send", json=VALID)).status_code == 202
    assert (await client.get("/logs/email")).status_code == 200


async def test_the_scheme_name_is_case_insensitive(
    anonymous: httpx.AsyncClient, api_key: str
) -> None:
    for scheme in ("bearer", "BEARER"):
        response = await anonymous.get(
            "/logs/email", headers={"Authorization": f"{scheme} {api_key}"}
        )
        assert response.status_code == 200, (scheme, response.text)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}, id="basic"),
        pytest.param({"Authorization": f"Bearer mr_{'a' * 43}"}, id="unknown"),
    ],
)
async def test_a_401_carries_a_bearer_challenge(
    anonymous: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    # RFC 9110 15.5.2: a 401 MUST carry WWW-Authenticate with at least one challenge.
    for response in (
        await anonymous.get("/logs/email", headers=headers),
        await anonymous.post("/send", json=VALID, headers=headers),
    ):
        assert_error(response, 401, "unauthorized")
        challenge = response.headers.get("WWW-Authenticate", "")
        assert challenge.lower().startswith("bearer"), response.headers


async def test_a_body_that_is_not_json_without_a_key_is_401(anonymous: httpx.AsyncClient) -> None:
    # Authentication comes first: a caller without a key learns nothing about its body.
    response = await anonymous.post(
        "/send", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 401, "unauthorized")


async def test_a_revoked_key_is_401_at_once_without_a_cache(
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    clean: None,
) -> None:
    key = await make_key(sessions)
    name = (await _key_row(sessions, key))["name"]
    async with api_client(settings_factory(api_key_cache_seconds=0), key=key) as client:
        assert (await client.post("/send", json=VALID)).status_code == 202
        assert (await client.get("/logs/email")).status_code == 200

        async with sessions() as session:
            await revoke_key(session, name)
            await session.commit()

        assert_error(await client.post("/send", json=VALID), 401, "unauthorized")
        assert_error(await client.get("/logs/email"), 401, "unauthorized")
        assert_error(await client.get(f"/emails/{NO_SUCH_EMAIL}"), 401, "unauthorized")
    assert (await _key_row(sessions, key))["revoked_at"] is not None


async def test_a_revoked_key_stops_working_within_the_cache_lifetime(
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    clean: None,
) -> None:
    cache = 0.5
    key = await make_key(sessions)
    name = (await _key_row(sessions, key))["name"]
    async with api_client(settings_factory(api_key_cache_seconds=cache), key=key) as client:
        assert (await client.get("/logs/email")).status_code == 200  # now cached
        async with sessions() as session:
            await revoke_key(session, name)
            await session.commit()
        revoked_at = time.monotonic()

        async def status() -> int:
            return (await client.get("/logs/email")).status_code

        await eventually(
            status, lambda code: code == 401, timeout=5, what="the key to stop working"
        )
        assert time.monotonic() - revoked_at <= cache + 1


# -- scopes ----------------------------------------------------------------------------


async def test_a_send_only_key_cannot_read_the_log(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions, (Scope.SEND,))
    async with api_client(settings, key=key) as client:
        sent = await client.post("/send", json=VALID)
        assert sent.status_code == 202, sent.text
        error = assert_error(await client.get("/logs/email"), 403, "forbidden")
        assert "logs:read" in error["message"]
        assert_error(await client.get(f"/emails/{sent.json()['id']}"), 403, "forbidden")
        assert_error(await client.get(f"/emails/{NO_SUCH_EMAIL}"), 403, "forbidden")


async def test_a_logs_only_key_cannot_send(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    key = await make_key(sessions, (Scope.LOGS_READ,))
    async with api_client(settings, key=key) as reader:
        error = assert_error(await reader.post("/send", json=VALID), 403, "forbidden")
        assert "send" in error["message"]
        log = await reader.get("/logs/email")
        assert log.status_code == 200, log.text
        # Nothing was stored by the refused request.
        assert log.json()["pagination"]["total"] == 0
        assert (await reader.get(f"/emails/{NO_SUCH_EMAIL}")).status_code == 404


# -- the published contract ------------------------------------------------------------


async def test_the_openapi_schema_declares_bearer_auth(anonymous: httpx.AsyncClient) -> None:
    document = (await anonymous.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    bearer = [name for name, scheme in schemes.items() if scheme == {**scheme, "type": "http"}]
    assert len(bearer) == 1, schemes
    name = bearer[0]
    assert schemes[name]["scheme"].lower() == "bearer"
    for method, path, operation in await _operations(anonymous):
        if path in WEBHOOK_PATHS:
            assert not operation.get("security"), (method, path)
            assert "401" in operation["responses"], (method, path)
        elif path in PUBLIC_PATHS:
            assert not operation.get("security"), (method, path)
        else:
            assert {name: []} in operation.get("security", []), (method, path)
            assert "401" in operation["responses"], (method, path)
            assert "403" in operation["responses"], (method, path)


# -- what is stored --------------------------------------------------------------------


async def test_last_used_at_is_set_by_a_request(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions)
    assert (await _key_row(sessions, key))["last_used_at"] is None
    async with api_client(settings, key=key) as client:
        assert (await client.get("/logs/email")).status_code == 200
    row = await _key_row(sessions, key)
    assert row["last_used_at"] is not None
    assert row["last_used_at"] >= row["created_at"]


async def test_a_key_row_stores_only_the_hash(sessions: async_sessionmaker[AsyncSession]) -> None:
    key = await make_key(sessions)
    row = await _key_row(sessions, key)
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert row["prefix"] == key[: len(row["prefix"])]
    assert len(row["prefix"]) < len(key) // 2
    secret_part = key[len(row["prefix"]) :]
    async with sessions() as session:
        # Every column of every key, as text: neither the key nor its hidden part is there.
        dumped = (
            await session.execute(
                text("SELECT string_agg(row_to_json(k)::text, '') FROM api_keys k")
            )
        ).scalar_one()
    assert isinstance(dumped, str) and row["key_hash"] in dumped
    assert key not in dumped
    assert secret_part not in dumped


def test_keys_are_prefixed_and_carry_at_least_128_random_bits() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("mr_")
        body = key.removeprefix("mr_")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", body), key
        # URL-safe base64: 6 bits a character; 43 characters carry 256 bits.
        assert len(body) * 6 >= 128
        assert len(body) == 43


async def test_keys_made_by_the_service_are_well_formed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = await make_key(sessions, (Scope.SEND,))
    assert key.startswith("mr_")
    assert len(key.removeprefix("mr_")) * 6 >= 128
    assert uuid.UUID(str((await _key_row(sessions, key))["id"]))


async def test_two_keys_with_one_name_cannot_both_be_active(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    name = f"dup-{secrets.token_hex(6)}"
    async with sessions() as session:
        await create_key(session, name=name, scopes=(Scope.SEND,))
        await session.commit()
    async with sessions() as session:
        with pytest.raises(InvalidRequest):
            await create_key(session, name=name, scopes=(Scope.SEND,))


# -- authenticated from the headers, before the body ----------------------------------------


@pytest.fixture(scope="module")
async def live_server(database_url: str, namespace: str) -> AsyncIterator[LiveServer]:
    async with serving(make_settings(database_url, namespace)) as server:
        yield server


async def _answer_to_headers_alone(server: LiveServer, head: str) -> tuple[int, float, bytes]:
    """Send only a request's head (its Content-Length promises a body that never comes):
    the status and how long it took to come, and the body that came with it."""
    host, port = server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        started = time.monotonic()
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            headers = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", headers.lower()).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
        return int(status_line.split()[1]), time.monotonic() - started, body
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("method", "path", "length"),
    [
        ("POST", "/send", 1000),
        ("POST", "/send/batch", 49 * 1024 * 1024),
        ("POST", "/emails/requeue", 1000),
        ("POST", f"/emails/{NO_SUCH_EMAIL}/cancel", 1000),
        ("GET", "/logs/email", 1000),
    ],
)
async def test_a_request_without_a_key_is_401_before_its_body_arrives(
    live_server: LiveServer, method: str, path: str, length: int
) -> None:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: mailroom.test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    status, elapsed, body = await _answer_to_headers_alone(live_server, head)
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert elapsed < 5  # at once: it used to wait for the body as long as the client did


async def test_a_key_without_the_scope_is_403_before_its_body_arrives(
    live_server: LiveServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions, (Scope.LOGS_READ,))
    head = (
        f"POST /send HTTP/1.1\r\nHost: mailroom.test\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    status, _, body = await _answer_to_headers_alone(live_server, head)
    assert status == 403, body


# -- failed authentication is limited per IP on every route ---------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/logs/email"),
        ("GET", f"/emails/{NO_SUCH_EMAIL}"),
        ("POST", f"/emails/{NO_SUCH_EMAIL}/cancel"),
        ("POST", "/emails/requeue"),
        ("GET", "/metrics"),
    ],
)
async def test_failed_authentication_is_rate_limited_per_ip_on_every_route(
    settings_factory: Callable[..., Settings], clean: None, method: str, path: str
) -> None:
    peer = f"198.19.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    app = create_app(settings_factory(send_rate_limit="5/minute"))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            wrong = {"Authorization": f"Bearer {generate_key()}"}
            statuses = [
                (await client.request(method, path, headers=wrong, json={})).status_code
                for _ in range(6)
            ]
    assert statuses == [401] * 5 + [429], statuses
