"""The API calls many tests make on the way to what they check, each asserting it succeeded."""

from __future__ import annotations

from typing import Any

import httpx


async def send_email(
    client: httpx.AsyncClient, body: dict[str, Any], **request: Any
) -> dict[str, Any]:
    """POST /send, which must accept ``body``; its 202 body (``request``: headers and so on)."""
    response = await client.post("/send", json=body, **request)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def email_detail(client: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    """GET /emails/{id}, which must find it."""
    response = await client.get(f"/emails/{email_id}")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


async def create_endpoint(
    client: httpx.AsyncClient, url: str, *, key: str | None = None, **fields: Any
) -> dict[str, Any]:
    """POST /webhooks, which must create the endpoint (``key``: when the client has none)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post("/webhooks", json={"url": url, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
