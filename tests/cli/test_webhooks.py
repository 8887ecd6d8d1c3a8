"""`mailroom webhooks create|list|rotate|test|deliveries|delete` against the test database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner, Result

from mailroom.cli import app
from mailroom.devserver import dev_settings
from mailroom.settings import Settings
from tests.support.cli import cli_environment
from tests.support.webhook_receiver import WebhookReceiver

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    with cli_environment(monkeypatch, settings):
        monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", "true")
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
        yield


async def _cli(*args: str) -> Result:
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def test_the_whole_round(receiver: WebhookReceiver) -> None:
    created = await _cli("webhooks", "create", "--url", receiver.url, "--event", "email.sent")
    assert created.exit_code == 0, created.output
    endpoint = json.loads(created.stdout)
    assert endpoint["events"] == ["email.sent"] and endpoint["secret"].startswith("whsec_")

    listed = await _cli("webhooks", "list")
    assert endpoint["id"] in listed.stdout and "enabled" in listed.stdout

    rotated = await _cli("webhooks", "rotate", endpoint["id"], "--expire-old-now")
    assert rotated.exit_code == 0, rotated.output
    secret = rotated.stdout.strip()

    tested = await _cli("webhooks", "test", endpoint["id"])
    assert tested.exit_code == 0, tested.output
    assert json.loads(tested.stdout)["status"] == "succeeded"
    [request] = receiver.received
    Webhook(secret).verify(request.body, request.headers)

    log = await _cli("webhooks", "deliveries", endpoint["id"])
    assert "webhook.test" in log.stdout and "succeeded" in log.stdout

    deleted = await _cli("webhooks", "delete", endpoint["id"])
    assert deleted.exit_code == 0
    again = await _cli("webhooks", "delete", endpoint["id"])
    assert again.exit_code == 1 and "No webhook endpoint" in again.output


async def test_bad_input_is_a_clear_error() -> None:
    bad = await _cli("webhooks", "create", "--url", "ftp://x.example.com", "--project", "default")
    assert bad.exit_code == 1 and "https" in bad.output
    unknown = await _cli("webhooks", "create", "--url", "https://x.example.com", "--event", "nope")
    assert unknown.exit_code == 1 and "email.sent" in unknown.output
    no_project = await _cli("webhooks", "list", "--project", "nowhere")
    assert no_project.exit_code == 1 and "nowhere" in no_project.output
    assert (await _cli("webhooks", "test", "not-an-id")).exit_code == 1


def test_mailroom_dev_lets_webhooks_reach_local_receivers(settings: Settings) -> None:
    local = dev_settings(settings)
    assert local.webhook_allow_http and local.webhook_allow_private
