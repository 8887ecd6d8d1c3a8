"""The dashboard's pages against real rows: overview, log, one email, actions, keys."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.emails import workers_repository
from mailroom.emails.models import DeliveryAttempt, WorkerProcess
from tests.api.dashboard.conftest import csrf_of, sign_in
from tests.conftest import make_key
from tests.support.factories import email_in, insert_emails, stored_emails

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _ids(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr id="e-([0-9a-f-]{36})"', page.text)


async def test_every_page_has_the_strict_headers(signed_in: httpx.AsyncClient) -> None:
    for path in (
        "/dashboard",
        "/dashboard/emails",
        "/dashboard/keys",
        "/dashboard/suppressions",
        "/dashboard/login",
    ):
        page = await signed_in.get(path)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert "<script>" not in page.text  # no inline script anywhere
        assert page.headers["cache-control"] == "no-store"


async def test_the_overview_reports_today_from_the_counters(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await insert_emails(
        sessions,
        email_in("sent"),
        email_in("sent"),
        email_in("failed"),
        email_in("queued"),
        email_in("sent", created_at=datetime.now(UTC) - timedelta(days=3)),
    )
    page = await signed_in.get("/dashboard", params={"tz": "UTC"})
    stats = dict(re.findall(r"<dt>(\w+)</dt><dd>([\d,]+)</dd>", page.text))
    assert stats == {"Total": "4", "Sent": "2", "Failed": "1", "Pending": "1", "Cancelled": "0"}
    # The failure reason: 550 5.1.1, once.
    assert re.search(r"<td>550</td><td>5\.1\.1</td><td class=\"num\"><a [^>]+>1</a>", page.text)
    assert page.text.count('<rect class="sent"') == 24
    waiting = dict(re.findall(r'status=(\w+)">\w+</a></dt><dd>(\d+)</dd>', page.text))
    assert waiting == {"scheduled": "0", "queued": "1", "retrying": "0", "sending": "0"}
    week = await signed_in.get("/dashboard", params={"range": "7d", "tz": "UTC"})
    assert week.text.count('<rect class="sent"') == 7
    assert "3 sent, 0 failed" not in week.text
    assert re.search(r": 2 sent, 1 failed</title>", week.text)
    assert re.search(r": 1 sent, 0 failed</title>", week.text)


async def test_the_log_filters_are_in_the_url_and_pages_follow_by_cursor(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    rows = [email_in("sent", created_at=now - timedelta(seconds=i)) for i in range(55)]
    rows.append(
        email_in(
            "failed",
            subject="Invoice 42",
            to_addrs=["bob@example.com"],
            recipients=["bob@example.com"],
        )
    )
    await insert_emails(sessions, *rows)
    first = await signed_in.get("/dashboard/emails")
    assert len(_ids(first)) == 50
    older = re.search(r'href="/dashboard/emails\?(cursor=[^"]+)" rel="next"', first.text)
    assert older is not None
    second = await signed_in.get("/dashboard/emails?" + older.group(1).replace("&amp;", "&"))
    assert len(_ids(second)) == 6
    assert not set(_ids(first)) & set(_ids(second))
    assert 'rel="next"' not in second.text
    assert "data-live" not in second.text  # only the first page is live

    failed = await signed_in.get("/dashboard/emails", params={"status": "failed"})
    assert _ids(failed) == [str(rows[-1].id)]
    by_text = await signed_in.get(
        "/dashboard/emails", params={"subject": "voice 4", "to": "Bob@example.com"}
    )
    assert _ids(by_text) == [str(rows[-1].id)]
    assert 'value="voice 4"' in by_text.text
    none = await signed_in.get("/dashboard/emails", params={"subject": "100%_"})
    assert _ids(none) == []
    assert "No emails match." in none.text


async def test_bad_filters_are_named_on_the_page(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get(
        "/dashboard/emails",
        params={"status": "lost", "to": "nobody", "since": "yesterday", "cursor": "abc"},
    )
    assert page.status_code == 200
    for message in (
        "Unknown status",
        "Not an email address",
        "Use a date like",
        "That page link is not valid",
    ):
        assert message in page.text


async def test_an_unknown_email_is_a_404_page(signed_in: httpx.AsyncClient) -> None:
    for email_id in (str(uuid.uuid4()), "not-an-id"):
        page = await signed_in.get(f"/dashboard/emails/{email_id}")
        assert page.status_code == 404
        assert "No such email" in page.text


async def test_an_email_shows_everything_escaped_with_its_attempts(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in(
        "failed",
        subject=XSS,
        sender=f'"{XSS}" <x@example.com>',
        text_body=XSS,
        html_body=f"<p>Hi</p>{XSS}",
        headers={"X-Evil": XSS},
    )
    await insert_emails(sessions, email)
    started = datetime.now(UTC)
    async with sessions() as session:
        session.add(
            DeliveryAttempt(
                email_id=email.id,
                attempt_number=1,
                started_at=started,
                finished_at=started + timedelta(milliseconds=42),
                outcome="permanent",
                smtp_code=550,
                enhanced_code="5.1.1",
                message=f"User unknown {XSS}",
                duration_ms=42,
            )
        )
        await session.commit()
    page = await signed_in.get(f"/dashboard/emails/{email.id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Attempt 1" in page.text and "5.1.1" in page.text and "42 ms" in page.text
    assert f'sandbox src="/dashboard/emails/{email.id}/body"' in page.text
    listing = await signed_in.get("/dashboard/emails")
    assert "<script>alert" not in listing.text

    body = await signed_in.get(f"/dashboard/emails/{email.id}/body")
    csp = body.headers["content-security-policy"]
    assert csp.startswith("sandbox;")
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "img-src data:;" in csp  # no remote images until asked
    assert body.headers["x-frame-options"] == "SAMEORIGIN"
    with_images = await signed_in.get(f"/dashboard/emails/{email.id}/body", params={"images": "1"})
    assert "img-src data: https: http:;" in with_images.headers["content-security-policy"]


async def test_retry_and_cancel_need_the_token_and_change_the_email(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    failed, scheduled = email_in("failed"), email_in("scheduled")
    await insert_emails(sessions, failed, scheduled)
    page = await signed_in.get(f"/dashboard/emails/{failed.id}")
    assert ">Retry</button>" in page.text and ">Cancel</button>" not in page.text
    assert (
        await signed_in.post(f"/dashboard/emails/{failed.id}/retry", data={})
    ).status_code == 403
    done = await signed_in.post(
        f"/dashboard/emails/{failed.id}/retry", data={"csrf": csrf_of(page)}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/dashboard/emails/{failed.id}?done=retried"
    again = await signed_in.post(
        f"/dashboard/emails/{failed.id}/retry", data={"csrf": csrf_of(page)}
    )
    assert again.status_code == 409

    page = await signed_in.get(f"/dashboard/emails/{scheduled.id}")
    assert ">Cancel</button>" in page.text and ">Retry</button>" not in page.text
    await signed_in.post(f"/dashboard/emails/{scheduled.id}/cancel", data={"csrf": csrf_of(page)})
    stored = await stored_emails(sessions, [failed.id, scheduled.id])
    assert stored[failed.id].status == "queued"
    assert stored[scheduled.id].status == "cancelled"


async def test_a_key_without_emails_write_sees_no_actions_and_may_not_act(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    failed = email_in("failed")
    await insert_emails(sessions, failed)
    await sign_in(browser_client, await make_key(sessions, (Scope.LOGS_READ,)))
    page = await browser_client.get(f"/dashboard/emails/{failed.id}")
    assert ">Retry</button>" not in page.text
    refused = await browser_client.post(
        f"/dashboard/emails/{failed.id}/retry", data={"csrf": csrf_of(page)}
    )
    assert refused.status_code == 403
    assert (await stored_emails(sessions, [failed.id]))[failed.id].status == "failed"


async def test_the_keys_page_lists_names_prefixes_and_scopes_never_a_key(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessions, (Scope.LOGS_READ, Scope.SEND))
    await sign_in(browser_client, key)
    page = await browser_client.get("/dashboard/keys")
    assert key not in page.text
    assert f"<code>{key[:8]}" in page.text or key[:8] in page.text
    assert "logs:read" in page.text


@pytest.mark.parametrize("name", ["dashboard.css", "dashboard.js"])
async def test_static_files_are_versioned_and_cached_for_good(
    browser_client: httpx.AsyncClient, name: str
) -> None:
    page = await browser_client.get("/dashboard/login")
    url = re.search(rf'"(/dashboard/static/{re.escape(name)}\?v=[0-9a-f]+)"', page.text)
    assert url is not None
    asset = await browser_client.get(url.group(1))
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert (await browser_client.get("/dashboard/static/nope.js")).status_code == 404


async def test_an_admin_key_switches_projects_and_others_see_only_their_own(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from mailroom.projects.service import create_project

    async with sessions() as session:
        project = await create_project(session, f"billing-{uuid.uuid4().hex[:6]}")
        await session.commit()
    theirs, ours = email_in("sent", project_id=project.id), email_in("sent")
    await insert_emails(sessions, theirs, ours)

    await sign_in(browser_client, await make_key(sessions, (Scope.LOGS_READ,)))
    page = await browser_client.get("/dashboard/emails", params={"project": project.name})
    assert _ids(page) == [str(ours.id)]
    assert 'id="project-switch"' not in page.text

    await sign_in(browser_client, await make_key(sessions, (Scope.LOGS_READ, Scope.ADMIN)))
    every = await browser_client.get("/dashboard/emails")
    assert set(_ids(every)) == {str(theirs.id), str(ours.id)}
    assert f'<option value="{project.name}">' in every.text
    one = await browser_client.get("/dashboard/emails", params={"project": project.name})
    assert _ids(one) == [str(theirs.id)]
    assert f'<option value="{project.name}" selected>' in one.text
    overview = await browser_client.get("/dashboard", params={"project": project.name})
    assert "<dt>Total</dt><dd>1</dd>" in overview.text
    missing = await browser_client.get("/dashboard/emails", params={"project": "nope"})
    assert missing.status_code == 404


async def test_dates_filter_by_whole_days_in_the_sessions_zone(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The session's zone is Europe/Berlin (see sign_in): 23:30 UTC on Dec 1 is Dec 2 there.
    late = email_in("sent", created_at=datetime(2026, 12, 1, 23, 30, tzinfo=UTC))
    early = email_in("sent", created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    await insert_emails(sessions, late, early)
    dec2 = await signed_in.get(
        "/dashboard/emails", params={"since": "2026-12-02", "until": "2026-12-02"}
    )
    assert _ids(dec2) == [str(late.id)]
    dec1 = await signed_in.get("/dashboard/emails", params={"until": "2026-12-01"})
    assert _ids(dec1) == [str(early.id)]
    backwards = await signed_in.get(
        "/dashboard/emails", params={"since": "2026-12-02", "until": "2026-12-01"}
    )
    assert "Must not be before the start date" in backwards.text


async def test_unknown_ids_and_ranges_answer_plainly(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get("/dashboard", params={"range": "1y"})
    assert page.text.count('<rect class="sent"') == 24
    csrf = csrf_of(page)
    for email_id in (str(uuid.uuid4()), "nope"):
        assert (await signed_in.get(f"/dashboard/emails/{email_id}/body")).status_code == 404
        for action in ("retry", "cancel"):
            answer = await signed_in.post(
                f"/dashboard/emails/{email_id}/{action}", data={"csrf": csrf}
            )
            assert answer.status_code == 404
            assert "No such email" in answer.text
    assert (await signed_in.get("/dashboard", params={"project": "nope"})).status_code == 404


def test_sizes_read_as_people_read_them() -> None:
    from mailroom.api.dashboard.web import templates

    size = templates.filters["size"]
    assert [size(n) for n in (512, 2048, 3 * 1024 * 1024)] == ["512 B", "2.0 KB", "3.0 MB"]


async def test_an_unknown_dashboard_address_is_a_404_page(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get("/dashboard/nothing/here")
    assert page.status_code == 404
    assert "No such page" in page.text
    assert page.headers["x-frame-options"] == "DENY"


async def test_the_overview_counts_the_workers_whose_heartbeat_is_fresh(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    def alive(page: httpx.Response) -> str:
        found = re.search(r"<dt>Workers alive</dt><dd[^>]*>(\d+)", page.text)
        assert found, page.text
        return found.group(1)

    async with sessions() as session:
        # Left by other tests' workers (the per-test cleanup keeps this table: a worker that
        # outlives one test must not lose its registration, and so its emails, to the next).
        await session.execute(delete(WorkerProcess))
        await session.commit()
    assert alive(await signed_in.get("/dashboard")) == "0"
    async with sessions() as session:
        await workers_repository.beat(session, uuid.uuid4(), host="a", pid=1)
        stale = uuid.uuid4()
        await workers_repository.beat(session, stale, host="b", pid=2)
        await session.execute(
            update(WorkerProcess)
            .where(WorkerProcess.id == stale)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        await session.commit()
    assert alive(await signed_in.get("/dashboard")) == "1"
