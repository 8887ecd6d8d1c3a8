"""Signing in and out of the dashboard: the form, the session cookie, CSRF, revocation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.dashboard.session import COOKIE, SessionSigner, Signers
from mailroom.auth.scopes import Scope
from mailroom.auth.service import revoke_key, signing_secret
from mailroom.auth.signouts import end_session, is_ended
from mailroom.settings import Settings
from tests.api.dashboard.conftest import csrf_of, sign_in
from tests.conftest import api_client, make_key
from tests.support.factories import key_id

PAGES = ("/dashboard", "/dashboard/emails", "/dashboard/keys", "/dashboard/suppressions")


async def test_the_form_has_a_labelled_key_field_and_a_sign_in_button(
    browser_client: httpx.AsyncClient,
) -> None:
    page = await browser_client.get("/dashboard/login")
    assert page.status_code == 200
    assert '<label for="key">API key</label>' in page.text
    assert '<input id="key" name="key" type="password"' in page.text
    assert '<button type="submit">Sign in</button>' in page.text


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_without_a_session_goes_to_sign_in_and_remembers_itself(
    browser_client: httpx.AsyncClient, path: str
) -> None:
    answer = await browser_client.get(path, params={"status": "failed"})
    assert answer.status_code == 303
    wanted = path.replace("/", "%2F")
    assert answer.headers["location"] == f"/dashboard/login?next={wanted}%3Fstatus%3Dfailed"


async def test_signing_in_returns_to_the_wanted_page_with_a_strict_cookie(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    answer = await sign_in(
        browser_client, await make_key(sessions), "/dashboard/emails?status=sent"
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/emails?status=sent"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie
    assert "Max-Age=43200" in cookie  # DASHBOARD_SESSION_HOURS=12
    assert "Secure" not in cookie  # plain http here; see the https test
    assert (await browser_client.get("/dashboard/emails")).status_code == 200


async def test_over_https_the_cookie_is_secure(
    settings: Settings, clean: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with api_client(settings) as client:
        client.base_url = httpx.URL("https://mailroom.test")
        answer = await sign_in(client, await make_key(sessions))
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "Secure" in cookie


async def test_a_wrong_key_shows_the_form_again_saying_so(
    browser_client: httpx.AsyncClient,
) -> None:
    answer = await sign_in(browser_client, "mr_" + "x" * 40)
    assert answer.status_code == 401
    assert "That key is not valid" in answer.text
    assert '<label for="key">API key</label>' in answer.text
    assert COOKIE not in browser_client.cookies


async def test_a_key_without_logs_read_cannot_sign_in(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    answer = await sign_in(browser_client, await make_key(sessions, (Scope.SEND,)))
    assert answer.status_code == 403
    assert "logs:read" in answer.text


async def test_signing_in_without_the_forms_token_is_refused(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions)
    answer = await browser_client.post("/dashboard/login", data={"key": key, "csrf": "forged"})
    assert answer.status_code == 403
    assert COOKIE not in browser_client.cookies


async def test_failed_sign_ins_are_rate_limited_per_ip(
    settings_factory: Callable[..., Settings], clean: None
) -> None:
    factory = settings_factory
    async with api_client(factory(send_rate_limit="2/minute")) as client:
        statuses = [(await sign_in(client, "mr_" + "y" * 40)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        last = await sign_in(client, "mr_" + "y" * 40)
    assert "Too many attempts" in last.text
    assert int(last.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/dashboard", "/dashboardx", "/logs/email"]
)
async def test_after_sign_in_only_dashboard_pages_are_redirected_to(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], target: str
) -> None:
    answer = await sign_in(browser_client, await make_key(sessions), target)
    assert answer.headers["location"] == "/dashboard"


async def test_signing_out_ends_the_session_and_needs_the_csrf_token(
    signed_in: httpx.AsyncClient,
) -> None:
    page = await signed_in.get("/dashboard")
    refused = await signed_in.post("/dashboard/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403
    assert (await signed_in.get("/dashboard")).status_code == 200
    answer = await signed_in.post("/dashboard/logout", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/login"
    assert (await signed_in.get("/dashboard")).status_code == 303


async def test_a_copy_of_the_cookie_taken_before_signing_out_stops_working(
    settings: Settings, signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    copied = signed_in.cookies.get(COOKIE, path="/dashboard")
    assert copied is not None
    page = await signed_in.get("/dashboard/emails")
    assert (
        await signed_in.post("/dashboard/logout", data={"csrf": csrf_of(page)})
    ).status_code == 303
    async with api_client(settings) as elsewhere:
        elsewhere.cookies.set(COOKIE, copied, path="/dashboard")
        answer = await elsewhere.get("/dashboard/emails")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Femails"
        live = await elsewhere.get(
            "/dashboard/emails/live", headers={"accept": "text/event-stream"}
        )
        assert live.status_code == 401


async def test_a_sign_out_forgets_sign_outs_whose_sessions_have_expired(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session:
        await end_session(session, "old", now - timedelta(seconds=1), now=now - timedelta(hours=1))
        await end_session(session, "new", now + timedelta(hours=1), now=now)
        await session.commit()
        assert not await is_ended(session, "old")
        assert await is_ended(session, "new")
        assert not await is_ended(session, "never-signed-out")


async def test_revoking_the_key_ends_its_sessions(
    settings_factory: Callable[..., Settings],
    clean: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    factory = settings_factory
    key = await make_key(sessions)
    async with api_client(factory(api_key_cache_seconds=0)) as client:
        await sign_in(client, key)
        assert (await client.get("/dashboard")).status_code == 200
        async with sessions() as session:
            await revoke_key(session, str(await key_id(sessions, key)))
            await session.commit()
        assert (await client.get("/dashboard")).status_code == 303


async def test_a_forged_or_expired_cookie_is_no_session(
    browser_client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings_factory: Callable[..., Settings],
) -> None:
    factory = settings_factory
    key = await make_key(sessions)
    other_secret = SessionSigner(factory(dashboard_secret="s" * 40))
    _, forged = other_secret.new(await key_id(sessions, key), "UTC")
    browser_client.cookies.set(COOKIE, forged, path="/dashboard")
    assert (await browser_client.get("/dashboard")).status_code == 303
    browser_client.cookies.set(COOKIE, "garbage", path="/dashboard")
    assert (await browser_client.get("/dashboard")).status_code == 303


def test_a_session_past_its_hours_is_no_session(settings_factory: Callable[..., Settings]) -> None:
    factory = settings_factory
    signer = SessionSigner(factory(dashboard_secret="k" * 40, dashboard_session_hours=1))
    session, cookie = signer.new(uuid.uuid4(), "UTC")
    assert signer.read(cookie) == session
    later = SessionSigner(factory(dashboard_secret="k" * 40, dashboard_session_hours=1))
    later.lifetime = -1  # as if the hour had passed
    assert later.read(cookie) is None
    assert session.expires_at > time.time()


async def test_without_a_configured_secret_every_process_signs_with_the_databases(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first, second = Signers(settings), Signers(settings)
    one, two = await first.get(sessions), await second.get(sessions)
    _, cookie = one.new(uuid.uuid4(), "UTC")
    assert two.read(cookie) is not None
    async with sessions() as session:
        assert await signing_secret(session, "dashboard") == await signing_secret(
            session, "dashboard"
        )


async def test_a_configured_secret_is_used_instead(
    settings_factory: Callable[..., Settings], sessions: async_sessionmaker[AsyncSession]
) -> None:
    configured = settings_factory(dashboard_secret="c" * 40)
    _, cookie = (await Signers(configured).get(sessions)).new(uuid.uuid4(), "UTC")
    assert SessionSigner(configured).read(cookie) is not None
    assert (await Signers(settings_factory()).get(sessions)).read(cookie) is None
