"""The dashboard's Suppressions page against real rows, and feedback on the email page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.scopes import Scope
from mailroom.emails.models import DeliveryFeedback
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.suppressions.models import Reason, Suppression
from mailroom.suppressions.repository import NewSuppression, add
from tests.api.dashboard.conftest import csrf_of, sign_in
from tests.conftest import make_key
from tests.support.factories import email_in, insert_emails

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
READ_ONLY = (Scope.LOGS_READ,)


async def _suppress(
    sessions: async_sessionmaker[AsyncSession], *entries: tuple[str, Reason]
) -> None:
    async with sessions() as session:
        await add(
            session,
            DEFAULT_PROJECT_ID,
            [NewSuppression(address, reason.value, None, None) for address, reason in entries],
            datetime.now(UTC),
        )
        await session.commit()


async def _listed(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(Suppression.address).where(Suppression.project_id == DEFAULT_PROJECT_ID)
        )
        return set(rows.scalars())


def _addresses(page: httpx.Response) -> list[str]:
    return re.findall(r'<td class="clip">([^<]+)</td>', page.text)


async def test_the_page_is_in_the_menu_and_lists_searches_and_filters(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _suppress(
        sessions,
        ("gone@example.com", Reason.HARD_BOUNCE),
        ("angry@example.org", Reason.COMPLAINT),
        ("asked@example.com", Reason.MANUAL),
    )
    overview = await signed_in.get("/dashboard")
    assert '<a href="/dashboard/suppressions">Suppressions</a>' in overview.text
    page = await signed_in.get("/dashboard/suppressions")
    assert page.status_code == 200
    assert sorted(_addresses(page)) == [
        "angry@example.org",
        "asked@example.com",
        "gone@example.com",
    ]
    assert 'class="badge r-hard_bounce">hard bounce<' in page.text
    found = await signed_in.get("/dashboard/suppressions", params={"q": "EXAMPLE.COM"})
    assert sorted(_addresses(found)) == ["asked@example.com", "gone@example.com"]
    assert 'value="EXAMPLE.COM"' in found.text  # the search stays in the form
    complaints = await signed_in.get("/dashboard/suppressions", params={"reason": "complaint"})
    assert _addresses(complaints) == ["angry@example.org"]
    assert '<option value="complaint" selected>' in complaints.text
    wrong = await signed_in.get("/dashboard/suppressions", params={"reason": "nonsense"})
    assert "Reason: pick one from the list." in wrong.text and _addresses(wrong) == []


async def test_older_pages_follow_a_cursor_that_keeps_the_filters(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _suppress(sessions, *((f"u{i:03}@example.com", Reason.MANUAL) for i in range(60)))
    await _suppress(sessions, ("other@example.net", Reason.MANUAL))
    first = await signed_in.get("/dashboard/suppressions", params={"q": "example.com"})
    older = re.search(r'href="(/dashboard/suppressions\?[^"]+)" rel="next"', first.text)
    assert older is not None and "q=example.com" in older.group(1)
    second = await signed_in.get(older.group(1).replace("&amp;", "&"))
    seen = _addresses(first) + _addresses(second)
    assert len(_addresses(first)) == 50
    assert sorted(seen) == [f"u{i:03}@example.com" for i in range(60)]
    assert 'rel="next"' not in second.text and ">Newest</a>" in second.text
    stale = await signed_in.get("/dashboard/suppressions", params={"cursor": "garbage"})
    assert stale.status_code == 200 and "out of date" in stale.text


async def test_a_key_with_suppressions_write_adds_and_removes_with_csrf(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    page = await signed_in.get("/dashboard/suppressions")
    assert '<label for="s-add">' in page.text
    form = {"csrf": csrf_of(page), "addresses": "One@Example.COM\ntwo@example.com, "}
    refused = await signed_in.post("/dashboard/suppressions", data={**form, "csrf": "forged"})
    assert refused.status_code == 403 and await _listed(sessions) == set()
    added = await signed_in.post("/dashboard/suppressions", data=form)
    assert added.status_code == 303
    assert added.headers["location"] == "/dashboard/suppressions?done=added&n=2"
    shown = await signed_in.get(added.headers["location"])
    assert "2 address(es) added to the list." in shown.text
    assert sorted(_addresses(shown)) == ["One@example.com", "two@example.com"]
    assert 'data-confirm="Take two@example.com off the list?' in shown.text
    assert await _listed(sessions) == {"One@example.com", "two@example.com"}

    no_token = await signed_in.post(
        "/dashboard/suppressions/remove", data={"address": "two@example.com"}
    )
    assert no_token.status_code == 403
    removed = await signed_in.post(
        "/dashboard/suppressions/remove",
        data={"csrf": csrf_of(shown), "address": "two@EXAMPLE.com"},
    )
    assert removed.status_code == 303
    assert removed.headers["location"] == "/dashboard/suppressions?done=removed"
    assert await _listed(sessions) == {"One@example.com"}
    again = await signed_in.post(
        "/dashboard/suppressions/remove",
        data={"csrf": csrf_of(shown), "address": "two@example.com"},
    )
    assert again.status_code == 404 and "No suppression for" in again.text


async def test_a_bad_address_shows_the_form_again_escaped_and_adds_nothing(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    page = await signed_in.get("/dashboard/suppressions")
    answer = await signed_in.post(
        "/dashboard/suppressions",
        data={"csrf": csrf_of(page), "addresses": f"fine@example.com\n{XSS}"},
    )
    assert answer.status_code == 422
    assert 'role="alert">addresses[1]' in answer.text
    assert "<script>alert(1)" not in answer.text and "<img src=x" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text  # kept in the textarea
    assert await _listed(sessions) == set()
    empty = await signed_in.post(
        "/dashboard/suppressions", data={"csrf": csrf_of(page), "addresses": " \n "}
    )
    assert empty.status_code == 422 and "Type at least one address." in empty.text
    searched = await signed_in.get("/dashboard/suppressions", params={"q": XSS})
    assert "<script>alert(1)" not in searched.text and "<img src=x" not in searched.text


async def test_a_read_only_key_sees_the_list_but_no_form_and_cannot_post(
    browser_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _suppress(sessions, ("kept@example.com", Reason.MANUAL))
    await sign_in(browser_client, await make_key(sessions, READ_ONLY))
    page = await browser_client.get("/dashboard/suppressions")
    assert _addresses(page) == ["kept@example.com"]
    assert "Add addresses" not in page.text and ">Remove</button>" not in page.text
    for path, data in (
        ("/dashboard/suppressions", {"addresses": "new@example.com"}),
        ("/dashboard/suppressions/remove", {"address": "kept@example.com"}),
    ):
        answer = await browser_client.post(path, data={**data, "csrf": csrf_of(page)})
        assert answer.status_code == 403
        assert "suppressions:write" in answer.text
    assert await _listed(sessions) == {"kept@example.com"}


async def test_the_email_page_shows_its_bounces_and_suppressed_recipients(
    signed_in: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = email_in("sent", suppressed_recipients=["left@example.com"])
    await insert_emails(sessions, email)
    now = datetime.now(UTC)
    async with sessions() as session:
        session.add(
            DeliveryFeedback(
                email_id=email.id,
                project_id=DEFAULT_PROJECT_ID,
                recipient="jane@example.com",
                kind="bounced",
                bounce_type="hard",
                diagnostic_code=f"smtp; 550 5.1.1 {XSS}",
                status_code="5.1.1",
                provider="dsn",
                occurred_at=now - timedelta(minutes=1),
                received_at=now,
            )
        )
        await session.commit()
    page = await signed_in.get(f"/dashboard/emails/{email.id}")
    assert page.status_code == 200
    assert "Bounces and complaints" in page.text
    assert "<strong>bounced (hard)</strong> · jane@example.com · from dsn" in page.text
    assert "<code>5.1.1</code> smtp; 550 5.1.1 &lt;script&gt;" in page.text
    assert "<script>alert(1)" not in page.text
    assert "<dt>Suppressed</dt><dd>left@example.com" in page.text
