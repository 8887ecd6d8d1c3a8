"""The edges of the HTTP surface: request body size and CORS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mailroom.settings import Settings
from tests.conftest import api_client

LIMIT = 2048
ORIGIN = "https://app.example.com"
JSON = {"Content-Type": "application/json"}


def _payload_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert str(LIMIT) in error["message"]


def _body_of_size(size: int, **fields: Any) -> bytes:
    """A /send body (valid unless ``fields`` say otherwise) of exactly ``size`` bytes."""
    skeleton = {"to": "jane@example.com", "subject": "Hello", "text": "", **fields}
    padding = size - len(json.dumps(skeleton).encode())
    assert padding > 0
    body = json.dumps({**skeleton, "text": "x" * padding}).encode()
    assert len(body) == size
    return body


async def _chunks(body: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
async def limited(
    settings_factory: Callable[..., Settings], clean: None, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_factory(max_body_bytes=LIMIT), key=api_key) as client:
        yield client


async def test_a_body_over_the_limit_is_413(limited: httpx.AsyncClient) -> None:
    response = await limited.post("/send", content=_body_of_size(LIMIT + 1), headers=JSON)
    _payload_too_large(response)
    assert (await limited.get("/logs/email")).json()["pagination"]["total"] == 0


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    limited: httpx.AsyncClient,
) -> None:
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        while read < 50 * LIMIT:
            read += 1024
            yield b" " * 1024

    response = await limited.post(
        "/send", content=endless(), headers={**JSON, "Content-Length": str(50 * LIMIT)}
    )
    _payload_too_large(response)
    assert read <= 1024


async def test_a_streamed_body_over_the_limit_is_413(limited: httpx.AsyncClient) -> None:
    response = await limited.post("/send", content=_chunks(_body_of_size(LIMIT + 1)), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    _payload_too_large(response)


async def test_an_endless_upload_is_cut_off_at_the_limit(limited: httpx.AsyncClient) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 1000 * LIMIT:  # bounded, so a failure cannot hang the run
            sent += 512
            yield b"[" * 512

    response = await limited.post("/send", content=endless(), headers=JSON)
    _payload_too_large(response)
    assert sent <= LIMIT + 512


async def test_the_limit_applies_without_a_key(
    settings_factory: Callable[..., Settings], clean: None
) -> None:
    async with api_client(settings_factory(max_body_bytes=LIMIT)) as anonymous:
        response = await anonymous.post("/send", content=b"x" * (LIMIT + 1), headers=JSON)
    _payload_too_large(response)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_body_exactly_at_the_limit_is_parsed(
    limited: httpx.AsyncClient, streamed: bool
) -> None:
    body = _body_of_size(LIMIT)
    content: bytes | AsyncIterator[bytes] = _chunks(body) if streamed else body
    response = await limited.post("/send", content=content, headers=JSON)
    assert response.status_code == 202, response.text
    email = (await limited.get(f"/emails/{response.json()['id']}")).json()
    assert email["text"] == json.loads(body)["text"]


async def test_an_invalid_body_at_the_limit_is_a_validation_error(
    limited: httpx.AsyncClient,
) -> None:
    body = _body_of_size(LIMIT, to="not an address")
    response = await limited.post("/send", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    not_json = await limited.post("/send", content=b"{" * LIMIT, headers=JSON)
    assert not_json.status_code == 400, not_json.text
    assert not_json.json()["error"]["code"] == "malformed_request"


async def test_an_understated_content_length_does_not_get_past_the_limit(
    limited: httpx.AsyncClient,
) -> None:
    response = await limited.post(
        "/send",
        content=_chunks(_body_of_size(LIMIT + 1)),
        headers={**JSON, "Content-Length": "100"},
    )
    _payload_too_large(response)


# -- CORS ------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    simple = await client.post(
        "/send",
        json={"to": "jane@example.com", "subject": "Hello", "text": "Hi"},
        headers={"Origin": ORIGIN},
    )
    assert simple.status_code == 202
    preflight = await client.options("/send", headers=_preflight(ORIGIN))
    for response in (simple, preflight):
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


@pytest.fixture
async def cors_client(
    settings_factory: Callable[..., Settings], clean: None, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_factory(cors_origins=ORIGIN), key=api_key) as client:
        yield client


async def test_a_preflight_from_an_allowed_origin_is_answered(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.options("/send", headers=_preflight(ORIGIN))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert response.headers.get("access-control-allow-credentials") != "true"


async def test_a_preflight_from_another_origin_gets_no_allow_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    for origin in ("https://evil.example.com", "https://app.example.com.evil.test", "null"):
        response = await cors_client.options("/send", headers=_preflight(origin))
        assert response.status_code == 400, (origin, response.text)
        assert "access-control-allow-origin" not in response.headers, origin


async def test_an_allowed_origin_can_read_the_rate_limit_and_replay_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.post(
        "/send",
        json={"to": "jane@example.com", "subject": "Hello", "text": "Hi"},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 202, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"ratelimit-limit", "retry-after", "idempotent-replayed", "x-request-id"} <= exposed

    other = await cors_client.post(
        "/send",
        json={"to": "jane@example.com", "subject": "Hello", "text": "Hi"},
        headers={"Origin": "https://evil.example.com"},
    )
    assert "access-control-allow-origin" not in other.headers


# -- security headers ------------------------------------------------------------------


async def test_every_response_is_never_sniffed_nor_cached(client: httpx.AsyncClient) -> None:
    accepted = await client.post(
        "/send", json={"to": "jane@example.com", "subject": "Hello", "text": "Hi"}
    )
    responses = [
        accepted,
        await client.get(f"/emails/{accepted.json()['id']}"),
        await client.get("/logs/email"),
        await client.get("/emails/00000000-0000-0000-0000-000000000000"),
        await client.post("/send", json={"to": "bad"}),
        await client.post("/send", json={}, headers={"Authorization": "Bearer nope"}),
        await client.get("/health"),
        await client.get("/openapi.json"),
    ]
    for response in responses:
        where = (response.request.url.path, response.status_code)
        assert response.headers["x-content-type-options"] == "nosniff", where
        assert response.headers["cache-control"] == "no-store", where
