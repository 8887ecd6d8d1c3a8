"""The dashboard's webhook pages against a real receiver: list, deliveries, test, replay,
rotate (each POST refused without the CSRF token), all of it escaped, scope-gated."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.dashboard.webhook_pages import DELIVERIES_PAGE
from mailroom.auth.scopes import Scope
from mailroom.settings import Settings
from mailroom.webhooks.events import emit_for_emails
from tests.api.dashboard.conftest import csrf_of, sign_in
from tests.conftest import api_client, make_key
from tests.support.api_calls import create_endpoint
from tests.support.factories import email_in, insert_emails
from tests.support.webhook_receiver import Reply, WebhookReceiver, webhook_receiver
from tests.webhooks.conftest import LOCAL

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.fixture
async def local_client(
    settings_factory: Callable[..., Settings], clean: None
) -> AsyncIterator[httpx.AsyncClient]:
    """The API letting webhooks reach 127.0.0.1 over http, with a browser-like client."""
    async with api_client(settings_factory(**LOCAL, webhook_poll_interval=0.1)) as client:
        yield client


async def _endpoint_page(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], url: str
) -> tuple[dict[str, Any], str, httpx.Response]:
    """A new endpoint at ``url``, signed in with the key that made it: it, its page's path
    and the page."""
    key = await make_key(sessions)
    hook = await create_endpoint(client, key=key, url=url)
    await sign_in(client, key)
    path = f"/dashboard/webhooks/{hook['id']}"
    return hook, path, await client.get(path)


async def test_the_endpoints_page_lists_them_escaped_for_a_key_with_the_scope(
    local_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
) -> None:
    key = await make_key(sessions)
    hostile_url = receiver.url + "?q=" + XSS.replace(" ", "%20").replace('"', "%22")
    hook = await create_endpoint(local_client, key=key, url=hostile_url, description=XSS)
    await sign_in(local_client, key)
    overview = await local_client.get("/dashboard")
    assert 'href="/dashboard/webhooks"' in overview.text
    page = await local_client.get("/dashboard/webhooks")
    assert page.status_code == 200
    assert f'href="/dashboard/webhooks/{hook["id"]}"' in page.text
    assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "enabled" in page.text
    one = await local_client.get(f"/dashboard/webhooks/{hook['id']}")
    assert one.status_code == 200
    assert "<script>alert(1)" not in one.text and "&lt;script&gt;" in one.text
    assert "No deliveries yet." in one.text
    for shown in (page, one, await local_client.get(f"/dashboard/webhooks/{hook['id']}/rotate")):
        assert shown.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
        assert "<script>" not in shown.text


async def test_without_webhooks_write_the_pages_are_hidden_and_refused(
    local_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
) -> None:
    hook = await create_endpoint(local_client, key=await make_key(sessions), url=receiver.url)
    await sign_in(local_client, await make_key(sessions, (Scope.LOGS_READ,)))
    overview = await local_client.get("/dashboard")
    assert 'href="/dashboard/webhooks"' not in overview.text
    for path in ("/dashboard/webhooks", f"/dashboard/webhooks/{hook['id']}"):
        page = await local_client.get(path)
        assert page.status_code == 403, path
        assert "webhooks:write" in page.text
    refused = await local_client.post(
        f"/dashboard/webhooks/{hook['id']}/test", data={"csrf": csrf_of(overview)}
    )
    assert refused.status_code == 403
    assert receiver.received == []


async def test_a_test_event_needs_the_token_then_reaches_the_receiver_and_shows(
    local_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
) -> None:
    _, path, page = await _endpoint_page(local_client, sessions, receiver.url)
    assert f'action="{path}/test"' in page.text
    without = await local_client.post(path + "/test", data={})
    assert without.status_code == 403
    wrong = await local_client.post(path + "/test", data={"csrf": "forged"})
    assert wrong.status_code == 403
    assert receiver.received == []
    done = await local_client.post(path + "/test", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert done.headers["location"] == path + "?done=tested"
    assert len(receiver.received) == 1
    shown = await local_client.get(done.headers["location"])
    assert "A test event was sent" in shown.text
    row = re.search(r"<td>webhook\.test</td>.*?</tr>", shown.text, re.S)
    assert row is not None
    assert "succeeded" in row.group(0) and '<td class="num">200</td>' in row.group(0)


async def test_replay_needs_the_token_then_sends_the_events_again(
    local_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
) -> None:
    _, path, page = await _endpoint_page(local_client, sessions, receiver.url)
    await local_client.post(path + "/test", data={"csrf": csrf_of(page)})
    assert len(receiver.received) == 1
    without = await local_client.post(path + "/replay", data={"hours": "24"})
    assert without.status_code == 403
    bad = await local_client.post(path + "/replay", data={"hours": "9", "csrf": csrf_of(page)})
    assert bad.status_code == 400
    done = await local_client.post(path + "/replay", data={"hours": "1", "csrf": csrf_of(page)})
    assert done.status_code == 303
    assert done.headers["location"] == path + "?done=replayed&n=1"
    shown = await local_client.get(done.headers["location"])
    assert "1 event(s) queued to be sent again." in shown.text


async def test_rotate_asks_first_needs_the_token_and_shows_the_secret_once(
    local_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
) -> None:
    hook, path, page = await _endpoint_page(local_client, sessions, receiver.url)
    assert f'href="{path}/rotate"' in page.text
    confirm = await local_client.get(path + "/rotate")
    assert confirm.status_code == 200
    assert "Rotate the signing secret?" in confirm.text
    assert "whsec_" not in confirm.text
    without = await local_client.post(path + "/rotate", data={})
    assert without.status_code == 403
    done = await local_client.post(
        path + "/rotate", data={"csrf": csrf_of(confirm), "expire_old_now": "1"}
    )
    assert done.status_code == 200
    assert done.headers["cache-control"] == "no-store"
    assert "it will not be shown again" in done.text
    secret = re.search(r'value="(whsec_[^"]+)"', done.text)
    assert secret is not None and secret.group(1) != hook["secret"]
    # The next event is signed with the new secret only (the old one ended at once).
    tested = await local_client.post(path + "/test", data={"csrf": csrf_of(confirm)})
    assert tested.status_code == 303
    signatures = receiver.received[-1].headers["webhook-signature"].split()
    assert len(signatures) == 1
    assert secret.group(1) not in (await local_client.get(path)).text


async def test_unknown_endpoints_are_404_pages(
    local_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await sign_in(local_client, await make_key(sessions))
    for path in (
        "/dashboard/webhooks/not-an-id",
        "/dashboard/webhooks/00000000-0000-0000-0000-000000000000",
        "/dashboard/webhooks/00000000-0000-0000-0000-000000000000/rotate",
    ):
        page = await local_client.get(path)
        assert page.status_code == 404, path
        assert "No such endpoint" in page.text


async def test_an_email_page_lists_its_webhook_events_in_order(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in("failed")
    await insert_emails(sessions, email)
    before = await signed_in.get(f"/dashboard/emails/{email.id}")
    shown_before = re.findall(r"<li><strong>(email\.\w+)</strong> · <time", before.text)
    async with sessions() as session:
        await emit_for_emails(session, [(email.id, "email.queued", {})])
        await emit_for_emails(session, [(email.id, "email.failed", {})])
        await session.commit()
    page = await signed_in.get(f"/dashboard/emails/{email.id}")
    events = re.findall(r"<li><strong>(email\.\w+)</strong> · <time", page.text)
    assert events == [*shown_before, "email.queued", "email.failed"]


async def test_replay_failed_sends_again_the_events_that_failed_for_good(
    local_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # 410 Gone: the attempt fails for good and the endpoint is disabled, with its reason.
    async with webhook_receiver(lambda _: Reply(status=410)) as gone:
        _, path, page = await _endpoint_page(local_client, sessions, gone.url)
        tested = await local_client.post(path + "/test", data={"csrf": csrf_of(page)})
        assert tested.status_code == 303
    page = await local_client.get(path)
    assert "disabled" in page.text and "Send test event" not in page.text
    row = re.search(r"<td>webhook\.test</td>.*?</tr>", page.text, re.S)
    assert row is not None and ">failed<" in row.group(0) and ">410<" in row.group(0)
    without = await local_client.post(path + "/replay-failed", data={})
    assert without.status_code == 403
    done = await local_client.post(path + "/replay-failed", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert done.headers["location"] == path + "?done=replayed&n=1"


async def test_deliveries_page_by_keyset_cursor(
    local_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    receiver: WebhookReceiver,
) -> None:
    key = await make_key(sessions)
    hook = await create_endpoint(local_client, key=key, url=receiver.url)
    for _ in range(DELIVERIES_PAGE + 3):
        sent = await local_client.post(
            f"/webhooks/{hook['id']}/test", headers={"Authorization": f"Bearer {key}"}
        )
        assert sent.status_code == 200, sent.text
    await sign_in(local_client, key)
    path = f"/dashboard/webhooks/{hook['id']}"
    first = await local_client.get(path)
    assert first.text.count("<td>webhook.test</td>") == DELIVERIES_PAGE
    older = re.search(r'href="(/dashboard/webhooks/[^"?]+\?cursor=[^"]+)" rel="next"', first.text)
    assert older is not None
    second = await local_client.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert second.text.count("<td>webhook.test</td>") == 3
    assert 'rel="next"' not in second.text and f'href="{path}">Newest</a>' in second.text
    bad = await local_client.get(path, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
