"""/health, /ready, and what every response carries: JSON errors and X-Request-ID."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_health_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_postgres_and_redis_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_not_ready_when_redis_is_down(
    settings_factory: Callable[..., Settings],
) -> None:
    async with api_client(settings_factory(redis_url="redis://127.0.0.1:1/0")) as client:
        response = await client.get("/ready")
        health = await client.get("/health")

    error = assert_error(response, 503, "not_ready")
    assert "redis" in error["message"]
    assert "database" not in error["message"]
    assert set(error["details"]) == {"database", "redis"}
    assert error["details"]["database"] == "ok"
    assert error["details"]["redis"].startswith("down: ")
    # Liveness does not depend on Redis.
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


async def test_an_unknown_route_is_a_404_jsonassert_error(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/no/such/route"), 404, "not_found")
    assert error["details"] is None


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/send", "POST"),
        ("DELETE", "/send", "POST"),
        ("POST", "/logs/email", "GET"),
        ("POST", "/health", "GET"),
        ("PUT", "/emails/00000000-0000-0000-0000-000000000000", "GET"),
    ],
)
async def test_a_wrong_method_is_a_405_jsonassert_error(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    error = assert_error(response, 405, "method_not_allowed")
    assert error["details"] is None
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("req-123", id="simple"),
        pytest.param("a.b_c-D9", id="all-allowed-characters"),
        pytest.param("r" * 128, id="128-chars"),
        pytest.param("0f8fad5b-d9cb-469f-a165-70867728950e", id="uuid"),
    ],
)
async def test_a_valid_request_id_is_echoed(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


async def test_the_request_id_is_echoed_on_errors_too(client: httpx.AsyncClient) -> None:
    not_found = await client.get("/nope", headers={"X-Request-ID": "req-404"})
    assert not_found.status_code == 404
    assert not_found.headers["x-request-id"] == "req-404"
    invalid = await client.post("/send", json={}, headers={"X-Request-ID": "req-422"})
    assert invalid.status_code == 422
    assert invalid.headers["x-request-id"] == "req-422"


async def test_a_request_id_is_generated_when_none_is_sent(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert GENERATED_ID.fullmatch(first.headers["x-request-id"])
    assert GENERATED_ID.fullmatch(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("has spaces", id="spaces"),
        pytest.param("r" * 129, id="129-chars"),
        pytest.param("r" * 300, id="300-chars"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("<script>", id="angle-brackets"),
        pytest.param("a/b", id="slash"),
    ],
)
async def test_an_invalid_request_id_is_replaced(
    client: httpx.AsyncClient, request_id: str
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    assert echoed != request_id
    assert GENERATED_ID.fullmatch(echoed)


async def test_an_invalid_request_id_is_not_stored(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/send",
        json={"to": "jane@example.com", "subject": "Hi", "text": "Hi"},
        headers={"X-Request-ID": "bad id with spaces"},
    )
    assert response.status_code == 202, response.text
    generated = response.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(generated)
    detail = (await client.get(f"/emails/{response.json()['id']}")).json()
    assert detail["requestId"] == generated
