"""Sandbox sends: a sandbox key, or `X-Sandbox: true`, logs the email as sent and sends nothing.

Each email goes the whole way (API, PostgreSQL, BullMQ, a real worker, the log) but the
worker hands it to the sandbox transport: no SMTP connection is made, which the
in-process SMTP server (or a port where nothing listens) shows.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from mailroom.auth.scopes import Scope
from mailroom.cli import app
from mailroom.settings import Settings
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.worker.runner import DeliveryWorker
from tests.api.shapes import assert_error
from tests.conftest import api_client, make_key, running_worker
from tests.support.api_calls import email_detail, send_email
from tests.support.cli import cli_environment
from tests.support.factories import make_sandbox_key, stored_emails
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

EMAIL: dict[str, Any] = {"to": "jane@example.com", "subject": "Sandboxed", "text": "Hi there"}


async def _final(client: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: email_detail(client, email_id),
        lambda d: d["status"] in ("sent", "failed"),
        what=f"email {email_id} to finish",
    )


def _assert_sandbox_sent(detail: dict[str, Any]) -> None:
    assert detail["status"] == "sent", detail
    assert detail["sandbox"] is True
    assert detail["sentAt"] is not None and detail["failedAt"] is None
    assert detail["error"] is None
    assert detail["attempts"] == 1
    [attempt] = detail["deliveryAttempts"]
    assert (attempt["number"], attempt["outcome"], attempt["code"]) == (1, "accepted", 250)
    assert "sandbox" in attempt["message"].lower()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A local port bound to nothing that listens: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))  # bound (so no one else gets it), never listening
        yield held.getsockname()[1]


@asynccontextmanager
async def _worker_against(settings: Settings, port: int) -> AsyncIterator[DeliveryWorker]:
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, timeout=5, pool_size=2))
    worker = DeliveryWorker(settings, transport=transport, grace_period=5)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


# -- a sandbox key ---------------------------------------------------------------------------


async def test_a_sandbox_key_sends_through_no_smtp_server_at_all(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], dead_port: int
) -> None:
    sandbox_key = await make_sandbox_key(sessions)
    normal_key = await make_key(sessions)
    async with (
        api_client(settings, key=sandbox_key) as sandbox,
        api_client(settings, key=normal_key) as normal,
        _worker_against(settings, dead_port),
    ):
        accepted = await send_email(sandbox, EMAIL)
        assert accepted["status"] == "queued"
        # The same worker, the same dead SMTP port: a real email cannot get through...
        real = await send_email(normal, {**EMAIL, "subject": "Real"})
        detail = await _final(sandbox, accepted["id"])
        failing = await eventually(
            lambda: email_detail(normal, real["id"]),
            lambda d: len(d["deliveryAttempts"]) >= 1,
            what="the real email's first attempt to be recorded",
        )

    # ...while the sandbox one went through the state machine and is logged as sent.
    _assert_sandbox_sent(detail)
    assert detail["messageId"] == accepted["messageId"]
    assert failing["status"] != "sent", failing
    assert failing["sandbox"] is False
    first = failing["deliveryAttempts"][0]
    # A connection fault: nothing answered on that port.
    assert (first["outcome"], first["code"]) == ("transient", None), first


async def test_a_sandbox_key_sends_nothing_and_a_normal_send_beside_it_is_delivered(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp_server: SmtpTestServer
) -> None:
    sandbox_key = await make_sandbox_key(sessions)
    normal_key = await make_key(sessions)
    async with (
        api_client(settings, key=sandbox_key) as sandbox,
        api_client(settings, key=normal_key) as normal,
        running_worker(settings, smtp_server),
    ):
        sandboxed = await send_email(sandbox, EMAIL)
        _assert_sandbox_sent(await _final(sandbox, sandboxed["id"]))
        assert smtp_server.handler.connections == 0
        assert smtp_server.handler.messages() == []

        real = await send_email(normal, {**EMAIL, "subject": "Real"})
        delivered = await _final(normal, real["id"])

    assert delivered["status"] == "sent" and delivered["sandbox"] is False
    assert "sandbox" not in (delivered["deliveryAttempts"][0]["message"] or "").lower()
    [received] = smtp_server.handler.messages()
    assert received.parsed()["Subject"] == "Real"
    assert received.parsed()["Message-ID"] == real["messageId"]


async def test_x_sandbox_false_cannot_unsandbox_a_sandbox_key(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp_server: SmtpTestServer
) -> None:
    sandbox_key = await make_sandbox_key(sessions)
    async with (
        api_client(settings, key=sandbox_key) as sandbox,
        running_worker(settings, smtp_server),
    ):
        accepted = await send_email(sandbox, EMAIL, headers={"X-Sandbox": "false"})
        _assert_sandbox_sent(await _final(sandbox, accepted["id"]))
    assert smtp_server.handler.connections == 0


async def test_a_sandbox_key_batch_is_sandboxed_whole(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp_server: SmtpTestServer
) -> None:
    sandbox_key = await make_sandbox_key(sessions)
    emails = [{**EMAIL, "to": f"b{n}@example.com"} for n in range(3)]
    async with (
        api_client(settings, key=sandbox_key) as sandbox,
        running_worker(settings, smtp_server),
    ):
        response = await sandbox.post("/send/batch", json={"emails": emails})
        assert response.status_code == 202, response.text
        ids = [item["id"] for item in response.json()["data"]]
        for email_id in ids:
            _assert_sandbox_sent(await _final(sandbox, email_id))
    assert smtp_server.handler.connections == 0


# -- the X-Sandbox header ----------------------------------------------------------------------


async def test_x_sandbox_true_with_a_normal_key_sends_nothing(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    async with running_worker(settings, smtp_server):
        sandboxed = await send_email(client, EMAIL, headers={"X-Sandbox": "true"})
        _assert_sandbox_sent(await _final(client, sandboxed["id"]))
        assert smtp_server.handler.connections == 0

        real = await send_email(
            client, {**EMAIL, "subject": "Real"}, headers={"X-Sandbox": "false"}
        )
        plain = await send_email(client, {**EMAIL, "subject": "Plain"})
        for email_id in (real["id"], plain["id"]):
            detail = await _final(client, email_id)
            assert (detail["status"], detail["sandbox"]) == ("sent", False)

    subjects = sorted(m.parsed()["Subject"] for m in smtp_server.handler.messages())
    assert subjects == ["Plain", "Real"]


async def test_a_batch_with_x_sandbox_is_sandboxed(
    client: httpx.AsyncClient, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    emails = [{**EMAIL, "to": f"b{n}@example.com"} for n in range(4)]
    async with running_worker(settings, smtp_server):
        response = await client.post(
            "/send/batch", json={"emails": emails}, headers={"X-Sandbox": "true"}
        )
        assert response.status_code == 202, response.text
        ids = [item["id"] for item in response.json()["data"]]
        for email_id in ids:
            _assert_sandbox_sent(await _final(client, email_id))
    assert smtp_server.handler.connections == 0
    log = (await client.get("/logs/email")).json()
    assert {item["sandbox"] for item in log["data"]} == {True}
    assert log["summary"]["sent"] == 4


async def test_a_scheduled_sandbox_email_is_scheduled_and_sandboxed(
    client: httpx.AsyncClient,
) -> None:
    from datetime import UTC, datetime, timedelta

    send_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    accepted = await send_email(client, {**EMAIL, "sendAt": send_at}, headers={"X-Sandbox": "1"})
    assert accepted["status"] == "scheduled"
    detail = await email_detail(client, accepted["id"])
    assert (detail["status"], detail["sandbox"]) == ("scheduled", True)


@pytest.mark.parametrize(("value", "sandbox"), [("true", True), ("1", True), ("false", False)])
async def test_x_sandbox_is_stored_with_the_email(
    client: httpx.AsyncClient, value: str, sandbox: bool
) -> None:
    accepted = await send_email(client, EMAIL, headers={"X-Sandbox": value})
    assert (await email_detail(client, accepted["id"]))["sandbox"] is sandbox


async def test_no_x_sandbox_and_a_normal_key_is_not_sandboxed(client: httpx.AsyncClient) -> None:
    accepted = await send_email(client, EMAIL)
    assert (await email_detail(client, accepted["id"]))["sandbox"] is False


async def test_an_x_sandbox_that_is_not_a_boolean_is_422_and_stores_nothing(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/send", json=EMAIL, headers={"X-Sandbox": "maybe"})
    error = assert_error(response, 422, "validation_error")
    assert "X-Sandbox" in str(error["details"]) or "x-sandbox" in str(error["details"]).lower()
    assert await stored_emails(sessions) == {}


# -- `mailroom keys create --sandbox` -------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(monkeypatch, settings):
        yield


async def _cli(*args: str) -> Result:
    # The commands run their own event loop, so they cannot share the test's.
    return await asyncio.to_thread(runner.invoke, app, list(args))


def _sandbox_cell(listing: str, name: str) -> str:
    lines = listing.splitlines()
    header = lines[0]
    start = header.index("SANDBOX")
    end = header.index("CREATED")
    [row] = [line for line in lines[1:] if line.split()[0] == name]
    return row[start:end].strip()


@pytest.mark.usefixtures("_cli_environment")
async def test_keys_create_sandbox_makes_a_sandbox_key_that_keys_list_shows(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], smtp_server: SmtpTestServer
) -> None:
    name, plain_name = f"ci-{secrets.token_hex(6)}", f"plain-{secrets.token_hex(6)}"
    result = await _cli("keys", "create", "--name", name, "--sandbox")
    assert result.exit_code == 0, result.output
    [key] = result.stdout.splitlines()
    assert key.startswith("mr_")
    assert "sandbox" in result.stderr.lower()
    plain = await _cli("keys", "create", "--name", plain_name, "--scopes", "send")
    assert plain.exit_code == 0, plain.output
    assert "sandbox" not in plain.stderr.lower()

    async with sessions() as session:
        rows = await session.execute(
            text("SELECT name, sandbox FROM api_keys WHERE name IN (:a, :b)"),
            {"a": name, "b": plain_name},
        )
        flags: dict[str, bool] = {row.name: row.sandbox for row in rows}
    assert flags == {name: True, plain_name: False}

    listing = await _cli("keys", "list")
    assert listing.exit_code == 0, listing.output
    assert _sandbox_cell(listing.stdout, name) == "yes"
    assert _sandbox_cell(listing.stdout, plain_name) == ""
    assert key not in listing.output

    # The key it printed works, and its emails are sandboxed.
    async with api_client(settings, key=key) as client, running_worker(settings, smtp_server):
        accepted = await send_email(client, EMAIL)
        _assert_sandbox_sent(await _final(client, accepted["id"]))
    assert smtp_server.handler.connections == 0


@pytest.mark.usefixtures("_cli_environment")
async def test_keys_create_sandbox_keeps_the_scopes_given(settings: Settings, clean: None) -> None:
    result = await _cli(
        "keys", "create", "--name", f"ci-{secrets.token_hex(6)}", "--sandbox", "--scopes", "send"
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    async with api_client(settings, key=key) as client:
        assert (await client.post("/send", json=EMAIL)).status_code == 202
        assert (await client.get("/logs/email")).status_code == 403


async def test_a_sandbox_key_without_the_send_scope_cannot_send(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_sandbox_key(sessions, (Scope.LOGS_READ.value,))
    async with api_client(settings, key=key) as client:
        assert_error(await client.post("/send", json=EMAIL), 403, "forbidden")
