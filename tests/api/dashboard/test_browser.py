"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against the API
served by uvicorn, a real worker and an SMTP server: sign in, live updates, one email,
retry, cancel, hostile emails, the suppression list, sign out."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.settings import Settings
from tests.conftest import make_key, running_worker
from tests.support.live_server import LiveServer, serving
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = '<script>alert("xss")</script><img src=x onerror="alert(1)">'
REJECTED = "nobody@example.com"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="Chromium is not installed (apt-get install chromium): the browser tests need it",
    ),
]


@dataclass
class Stack:
    server: LiveServer
    smtp: SmtpTestServer
    key: str
    api: httpx.AsyncClient

    async def send(self, **fields: Any) -> str:
        body = {"to": "jane@example.com", "subject": "Hello", "text": "Hi", **fields}
        answer = await self.api.post("/send", json=body)
        assert answer.status_code == 202, answer.text
        email_id: str = answer.json()["id"]
        return email_id

    async def status(self, email_id: str) -> str:
        status: str = (await self.api.get(f"/emails/{email_id}")).json()["status"]
        return status


@pytest.fixture(scope="module")
async def stack(
    settings_factory: Callable[..., Settings], sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Stack]:
    settings = settings_factory(api_key_cache_seconds=0)
    smtp = SmtpTestServer()
    smtp.handler.rcpt_replies[REJECTED] = "550 5.1.1 User unknown"
    await smtp.start()
    key = await make_key(sessions)
    try:
        async with (
            serving(settings) as server,
            running_worker(settings, smtp),
            httpx.AsyncClient(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}
            ) as api,
        ):
            yield Stack(server, smtp, key, api)
    finally:
        await smtp.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # --no-sandbox: Chromium's own sandbox cannot start as root (CI runs as root).
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, stack: Stack, clean: None) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=stack.server.base_url)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    yield page
    await context.close()


async def sign_in(page: Page, key: str, path: str = "/dashboard") -> None:
    await page.goto(path)
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**{path}")


async def test_an_email_sent_now_appears_live_and_opens_with_its_attempts(
    page: Page, stack: Stack
) -> None:
    await sign_in(page, stack.key, "/dashboard/emails")
    await expect(page.get_by_text("No emails match.")).to_be_visible()
    await page.evaluate("window.notReloaded = true")

    email_id = await stack.send(subject="Live one")
    row = page.locator(f"#e-{email_id}")
    await expect(row).to_be_visible()
    await expect(row.locator(".badge")).to_have_text("sent")
    assert await page.evaluate("window.notReloaded") is True

    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", name="Live one")).to_be_visible()
    attempts = page.locator(".timeline li")
    await expect(attempts).to_have_count(1)
    await expect(attempts.first).to_contain_text("accepted")
    await expect(attempts.first).to_contain_text("250")


async def test_a_failed_email_is_retried_after_confirmation(page: Page, stack: Stack) -> None:
    email_id = await stack.send(to=REJECTED, subject="Will fail")
    await eventually(lambda: stack.status(email_id), lambda s: s == "failed", what="a failure")
    await sign_in(page, stack.key, f"/dashboard/emails/{email_id}")
    await expect(page.locator(".timeline li")).to_have_count(1)
    await expect(page.locator(".timeline li").first).to_contain_text("5.1.1")
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_text("The email was retried.")).to_be_visible()
    assert asked == ["Send this email again?"]
    await eventually(lambda: stack.status(email_id), lambda s: s == "failed", what="2nd failure")
    await page.reload()
    await expect(page.locator(".timeline li")).to_have_count(2)


async def test_a_scheduled_email_is_cancelled_after_confirmation(page: Page, stack: Stack) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    email_id = await stack.send(subject="Later", sendAt=later)
    await sign_in(page, stack.key, f"/dashboard/emails/{email_id}")
    answers = ["dismiss", "accept"]

    async def answer(dialog: Dialog) -> None:
        await (dialog.dismiss() if answers.pop(0) == "dismiss" else dialog.accept())

    page.on("dialog", answer)
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    assert answers == ["accept"]
    assert await stack.status(email_id) == "scheduled"  # dismissed: nothing happened
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_text("The email was cancelled.")).to_be_visible()
    await expect(page.locator(".head .badge")).to_have_text("cancelled")
    assert await stack.status(email_id) == "cancelled"


async def test_hostile_emails_display_as_text_and_run_nothing(page: Page, stack: Stack) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in(page, stack.key, "/dashboard/emails")
    email_id = await stack.send(
        subject=XSS, text=XSS, html=f"<p id='hostile'>Hello</p>{XSS}", headers={"X-Note": XSS}
    )
    row = page.locator(f"#e-{email_id}")
    await expect(row).to_contain_text('<script>alert("xss")</script>')  # shown, as text
    await page.goto(f"/dashboard/emails/{email_id}")
    await expect(page.locator("h1")).to_have_text(XSS)
    await expect(page.locator("pre.text")).to_have_text(XSS)
    body = page.frame_locator("iframe[name=email-body]")
    await expect(body.locator("#hostile")).to_have_text("Hello")
    await page.get_by_role("link", name="Load images").click()
    await expect(body.locator("#hostile")).to_have_text("Hello")
    assert dialogs == []


async def test_signing_out_ends_access(page: Page, stack: Stack, browser: Browser) -> None:
    await sign_in(page, stack.key)
    copied = await page.context.cookies()  # as someone who took the cookie would have it
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto("/dashboard/emails")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert "/dashboard/login?next=%2Fdashboard%2Femails" in page.url
    elsewhere = await browser.new_context(base_url=stack.server.base_url)
    try:
        await elsewhere.add_cookies(copied)  # type: ignore[arg-type]
        other = await elsewhere.new_page()
        await other.goto("/dashboard/emails")
        await expect(other.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        await elsewhere.close()


async def test_an_address_is_suppressed_and_removed_after_confirmation(
    page: Page, stack: Stack
) -> None:
    await sign_in(page, stack.key, "/dashboard/suppressions")
    await expect(page.get_by_text("No suppressed address matches.")).to_be_visible()
    await page.get_by_role("textbox", name="Addresses").fill(f"browser@example.com\n{XSS}")
    await page.get_by_role("button", name="Suppress").click()
    await expect(page.get_by_role("alert")).to_contain_text("addresses[1]")
    await expect(page.get_by_role("textbox", name="Addresses")).to_have_value(
        f"browser@example.com\n{XSS}"
    )
    await page.get_by_role("textbox", name="Addresses").fill("browser@example.com")
    await page.get_by_role("button", name="Suppress").click()
    await expect(page.get_by_text("1 address(es) added to the list.")).to_be_visible()
    await expect(page.get_by_role("cell", name="browser@example.com", exact=True)).to_be_visible()
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.get_by_role("button", name="Remove browser@example.com").click()
    await expect(page.get_by_text("The address was taken off the list.")).to_be_visible()
    await expect(page.get_by_text("No suppressed address matches.")).to_be_visible()
    assert asked == ["Take browser@example.com off the list? Emails to it will be sent again."]


async def test_the_keyboard_alone_signs_in_and_moves_between_pages(
    page: Page, stack: Stack
) -> None:
    await page.goto("/dashboard")
    # The sign-in page puts the focus in the key field; keys typed before it does go nowhere.
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.keyboard.type(stack.key)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Emails")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Emails")).to_be_visible()
