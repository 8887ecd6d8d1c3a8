"""Screenshots of the dashboard's pages, light and dark, for docs/dashboard/.

Run by scripts/dashboard-screenshots: a database of its own with a day's and a month's
worth of example emails, the API served by uvicorn, a worker delivering to an SMTP server
that refuses one address, and Chromium taking each page at 1440 and 360 px wide.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import async_playwright
from sqlalchemy.engine import make_url

from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.db.engine import open_database
from mailroom.db.migrate import migrate
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.suppressions.models import Reason
from mailroom.suppressions.repository import NewSuppression
from mailroom.suppressions.repository import add as add_suppressions
from tests.conftest import REDIS_URL, SERVER_URL, make_settings, running_worker
from tests.support.factories import email_in, insert_emails
from tests.support.live_server import serving
from tests.support.smtp_server import SmtpTestServer

OUT = Path(__file__).parents[3] / "docs" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
PEOPLE = ["jane@example.com", "omar@example.org", "li@example.net", "ana@example.com"]
SUBJECTS = ["Your receipt #{}", "Reset your password", "Welcome aboard", "Weekly digest {}"]


async def _examples(database_url: str) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    rows = []
    for hours_ago in range(24 * 30):
        for _ in range(rng.randint(0, 6) if hours_ago > 24 else rng.randint(2, 14)):
            created = now - timedelta(hours=hours_ago, minutes=rng.randint(0, 59))
            if created > now:
                continue
            to = rng.choice(PEOPLE)
            status = "failed" if rng.random() < 0.08 else "sent"
            extra = {}
            if status == "failed" and rng.random() < 0.4:
                extra = {
                    "last_error_code": 552,
                    "last_error_enhanced": "5.2.2",
                    "last_error_message": "Mailbox full",
                }
            rows.append(
                email_in(
                    status,
                    created_at=created,
                    to_addrs=[to],
                    recipients=[to],
                    subject=rng.choice(SUBJECTS).format(rng.randint(100, 999)),
                    **extra,
                )
            )
    rows.append(email_in("scheduled", subject="Trial ends tomorrow"))
    listed = [
        NewSuppression("old-address@example.org", Reason.HARD_BOUNCE.value, rows[3].id),
        NewSuppression("not-me@example.net", Reason.COMPLAINT.value, rows[9].id),
        NewSuppression("left@example.com", Reason.UNSUBSCRIBE.value, None),
        NewSuppression("typo@exmaple.com", Reason.MANUAL.value, None, now + timedelta(days=30)),
    ]
    async with open_database(make_settings(database_url, "screens"), pool_size=2) as sessions:
        await insert_emails(sessions, *rows)
        async with sessions() as session:
            await add_suppressions(session, DEFAULT_PROJECT_ID, listed, now)
            await session.commit()


async def main() -> None:
    name = f"mailroom_screens_{os.getpid()}_{secrets.token_hex(3)}"
    url = make_url(SERVER_URL).set(drivername="postgresql+asyncpg", database=name)
    database_url = url.render_as_string(hide_password=False)
    await migrate(database_url)
    try:
        await _examples(database_url)
        settings = make_settings(database_url, name, redis_url=REDIS_URL)
        async with open_database(settings, pool_size=1) as sessions, sessions() as session:
            _, key = await create_key(session, name="dashboard", scopes=list(Scope))
            await session.commit()
        smtp = SmtpTestServer()
        smtp.handler.rcpt_replies["bounce@example.com"] = "550 5.1.1 User unknown"
        await smtp.start()
        async with serving(settings) as server, running_worker(settings, smtp):
            async with httpx.AsyncClient(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}
            ) as api:
                failed = (
                    await api.post(
                        "/send",
                        json={
                            "to": "bounce@example.com",
                            "subject": "Your order has shipped",
                            "text": "It is on its way.",
                            "html": "<h1>Shipped</h1><p>It is on its way.</p>",
                        },
                    )
                ).json()["id"]
                # An endpoint for the Webhooks page (.invalid never resolves: nothing is sent).
                await api.post(
                    "/webhooks",
                    json={
                        "url": "https://orders.example.invalid/mailroom-events",
                        "events": ["email.sent", "email.failed", "email.bounced"],
                        "description": "Order service",
                    },
                )
                await asyncio.sleep(1.5)  # delivered (and refused) by the worker
            await _shoot(server.base_url, key, failed)
        await smtp.stop()
    finally:
        server_url = make_url(SERVER_URL)
        connection = await asyncpg.connect(
            user=server_url.username,
            host=server_url.host,
            port=server_url.port,
            database="postgres",
        )
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def _shoot(base_url: str, key: str, email_id: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    pages = {
        "overview": "/dashboard?tz=UTC",
        "emails": "/dashboard/emails",
        "email": f"/dashboard/emails/{email_id}",
        "suppressions": "/dashboard/suppressions",
        "keys": "/dashboard/keys",
        "webhooks": "/dashboard/webhooks",
        "providers": "/dashboard/providers",
        "login": "/dashboard/login",
    }
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for scheme in ("light", "dark"):
            for width, suffix in ((1440, ""), (360, "-mobile")):
                context = await browser.new_context(
                    base_url=base_url,
                    color_scheme=scheme,
                    viewport={"width": width, "height": 900},
                    timezone_id="UTC",
                )
                page = await context.new_page()
                await page.goto("/dashboard/login")
                await page.get_by_label("API key").fill(key)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url("**/dashboard")
                for label, path in pages.items():
                    if label == "login":
                        await context.clear_cookies()
                    if suffix and label not in ("overview", "emails"):
                        continue
                    await page.goto(path)
                    await page.screenshot(
                        path=OUT / f"{label}-{scheme}{suffix}.png", full_page=label != "emails"
                    )
                await context.close()
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
