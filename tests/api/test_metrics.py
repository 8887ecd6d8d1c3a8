"""GET /metrics: who may scrape, and what the API's counters and gauges say.

Counters belong to the process, and other tests move them too, so each test compares a
scrape before with a scrape after what it does.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.settings import Settings
from tests.api.shapes import assert_error
from tests.conftest import api_client, make_key
from tests.metrics.scrape import label_values, value

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


async def _scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PROMETHEUS_TEXT
    return response.text


# -- who may scrape ------------------------------------------------------------------


async def test_metrics_need_a_key(anonymous: httpx.AsyncClient) -> None:
    error = assert_error(await anonymous.get("/metrics"), 401, "unauthorized")
    assert "Authorization" in error["message"]


async def test_metrics_need_the_metrics_read_scope(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    for scopes in [(Scope.SEND,), (Scope.SEND, Scope.LOGS_READ, Scope.EMAILS_WRITE)]:
        key = await make_key(sessions, scopes)
        async with api_client(settings, key=key) as client:
            error = assert_error(await client.get("/metrics"), 403, "forbidden")
            assert "metrics:read" in error["message"]


async def test_a_metrics_only_key_scrapes_and_can_do_nothing_else(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions, (Scope.METRICS_READ,))
    async with api_client(settings, key=key) as scraper:
        text = await _scrape(scraper)
        assert "# TYPE mailroom_http_requests_total counter" in text
        assert "# TYPE mailroom_emails_accepted_total counter" in text
        assert_error(await scraper.post("/send", json=VALID), 403, "forbidden")
        assert_error(await scraper.get("/logs/email"), 403, "forbidden")


# -- the API's own metrics -----------------------------------------------------------


async def test_a_send_counts_one_accepted_email_and_its_request(
    client: httpx.AsyncClient,
) -> None:
    before = await _scrape(client)
    response = await client.post("/send", json=VALID)
    assert response.status_code == 202, response.text
    after = await _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mailroom_emails_accepted_total", endpoint="single") == 1
    assert delta("mailroom_emails_accepted_total", endpoint="batch") == 0
    sent = {"method": "POST", "route": "/send", "status": "202"}
    assert delta("mailroom_http_requests_total", **sent) == 1
    assert delta("mailroom_http_request_duration_seconds_count", **sent) == 1
    assert delta("mailroom_http_request_duration_seconds_bucket", le="+Inf", **sent) == 1
    assert delta("mailroom_http_request_duration_seconds_sum", **sent) > 0
    # The first scrape is itself counted by the second.
    scraped = {"method": "GET", "route": "/metrics", "status": "200"}
    assert delta("mailroom_http_requests_total", **scraped) == 1


async def test_refused_and_replayed_sends_accept_nothing(client: httpx.AsyncClient) -> None:
    before = await _scrape(client)
    invalid = await client.post("/send", json={**VALID, "to": "not-an-address"})
    assert invalid.status_code == 422, invalid.text
    headers = {"Idempotency-Key": f"metrics-{uuid.uuid4()}"}
    first = await client.post("/send", json=VALID, headers=headers)
    replay = await client.post("/send", json=VALID, headers=headers)
    assert first.status_code == replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    after = await _scrape(client)

    single = {"endpoint": "single"}
    assert (
        value(after, "mailroom_emails_accepted_total", **single)
        - value(before, "mailroom_emails_accepted_total", **single)
        == 1
    )
    posts = {"method": "POST", "route": "/send"}
    for status, expected in (("202", 2), ("422", 1)):
        counted = value(after, "mailroom_http_requests_total", status=status, **posts)
        assert counted - value(before, "mailroom_http_requests_total", status=status, **posts) == (
            expected
        )


async def test_a_batch_counts_the_emails_it_accepted(client: httpx.AsyncClient) -> None:
    before = await _scrape(client)
    batch = {"emails": [VALID, {**VALID, "to": "carl@example.com"}, {**VALID, "to": "nope"}]}
    response = await client.post("/send/batch", json=batch)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2
    after = await _scrape(client)

    for endpoint, expected in (("batch", 2), ("single", 0)):
        labels = {"endpoint": endpoint}
        accepted = value(after, "mailroom_emails_accepted_total", **labels)
        assert accepted - value(before, "mailroom_emails_accepted_total", **labels) == expected
    labels = {"method": "POST", "route": "/send/batch", "status": "202"}
    counted = value(after, "mailroom_http_requests_total", **labels)
    assert counted - value(before, "mailroom_http_requests_total", **labels) == 1


async def test_routes_are_labelled_by_template_never_by_path(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    before = await _scrape(client)
    email_id = str(uuid.uuid4())
    assert (await client.get(f"/emails/{email_id}")).status_code == 404
    stray = f"/no-such-thing/{uuid.uuid4()}"
    assert (await client.get(stray)).status_code == 404
    assert (await client.request("PROPFIND", "/logs/email")).status_code == 405
    # Refused by the body limit before any routing happened, yet labelled by its route.
    too_big = await client.post("/send", content=b"x" * (settings.max_body_bytes + 1))
    assert too_big.status_code == 413
    after = await _scrape(client)

    expected = [
        ({"method": "GET", "route": "/emails/{email_id}", "status": "404"}, 1),
        ({"method": "GET", "route": "unmatched", "status": "404"}, 1),
        ({"method": "other", "route": "/logs/email", "status": "405"}, 1),
        ({"method": "POST", "route": "/send", "status": "413"}, 1),
    ]
    for labels, count in expected:
        counted = value(after, "mailroom_http_requests_total", **labels)
        assert counted - value(before, "mailroom_http_requests_total", **labels) == count, labels
    assert email_id not in after and stray not in after
    assert not any("no-such-thing" in route for route in label_values(after, "route"))
    assert label_values(after, "method") <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "other",
    }


async def test_no_key_or_address_reaches_a_label(client: httpx.AsyncClient, api_key: str) -> None:
    response = await client.post("/send", json={**VALID, "to": "secret.person@example.org"})
    assert response.status_code == 202, response.text
    text = await _scrape(client)
    assert api_key not in text and api_key[:12] not in text
    assert "secret.person" not in text and "@" not in text


# -- the queue, read at scrape time --------------------------------------------------


async def test_queue_depth_reflects_the_database_and_redis(client: httpx.AsyncClient) -> None:
    # `client` starts from an empty log and queue, and no worker runs here.
    empty = await _scrape(client)
    assert value(empty, "mailroom_emails", status="queued") == 0
    for _ in range(2):
        assert (await client.post("/send", json=VALID)).status_code == 202
    text = await _scrape(client)

    assert value(text, "mailroom_metrics_source_up", source="database") == 1
    assert value(text, "mailroom_metrics_source_up", source="redis") == 1
    assert label_values(text, "status") >= {
        "queued",
        "sending",
        "retrying",
        "sent",
        "failed",
        "scheduled",
        "cancelled",
    }
    assert value(text, "mailroom_emails", status="queued") == 2
    assert value(text, "mailroom_emails", status="sent") == 0
    assert value(text, "mailroom_queue_jobs", state="waiting") == 2
    assert value(text, "mailroom_queue_jobs", state="active") == 0
    assert value(text, "mailroom_queue_jobs", state="delayed") == 0


async def test_a_source_that_is_down_is_reported_and_the_rest_still_served(
    settings_factory: Any, api_key: str, clean: None
) -> None:
    nowhere = settings_factory(redis_url="redis://127.0.0.1:1/0")
    async with api_client(nowhere, key=api_key) as client:
        text = await _scrape(client)
    assert value(text, "mailroom_metrics_source_up", source="redis") == 0
    assert value(text, "mailroom_metrics_source_up", source="database") == 1
    assert "# TYPE mailroom_queue_jobs" not in text
    assert value(text, "mailroom_emails", status="queued") == 0
    assert "# TYPE mailroom_http_requests_total counter" in text


# -- the published contract ----------------------------------------------------------


@pytest.mark.parametrize("status", ["401", "403"])
async def test_the_openapi_document_describes_metrics(
    client: httpx.AsyncClient, status: str
) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/metrics"]["get"]
    assert operation["description"] and "metrics:read" in operation["description"]
    assert set(operation["responses"]["200"]["content"]) == {"text/plain"}
    error = operation["responses"][status]["content"]
    assert set(error) == {"application/json"}
    ref = error["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]
    assert operation["security"]
