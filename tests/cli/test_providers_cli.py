"""`mailroom providers list`: every provider, its limits, its breaker; passwords masked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mailroom.cli.main import app
from mailroom.metrics.collectors import ProviderCollector
from mailroom.settings import get_settings
from mailroom.transport.provider_config import ProviderConfig, Rate
from mailroom.transport.router import ProviderRouter
from mailroom.transport.sandbox import SandboxTransport
from mailroom.transport.smtp_config import SmtpConfig


def test_list_shows_each_provider_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "SMTP_PROVIDERS",
        "smtp://AKIA:hunter2@email-smtp.eu-west-1.amazonaws.com:587?name=ses&rate=14/second"
        "&daily=50000 smtps://me%40acme.com:s3cr3t@smtp-relay.brevo.com?name=brevo&daily=300",
    )
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("SMTP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["providers", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ses\tweight=1\trate=14/second\tdaily=50000\tbreaker=unknown")
    assert lines[1].startswith("brevo\tweight=1\trate=unlimited\tdaily=300")
    assert "smtps://me%40acme.com:***@smtp-relay.brevo.com:465" in lines[1]
    assert "hunter2" not in result.output and "s3cr3t" not in result.output


def test_a_bad_provider_list_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PROVIDERS", "smtp://u:hunter2@relay.example.com?name=a&rate=fast")
    monkeypatch.delenv("SMTP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["providers", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "provider 'a'" in result.output and "option rate" in result.output
    assert "hunter2" not in result.output


def test_metrics_per_provider() -> None:
    config = ProviderConfig("ses", SmtpConfig(host="h", port=25), rate=Rate(14, 1.0))
    router = ProviderRouter([(config, SandboxTransport())])
    router.providers[0].counts["sent"] = 3
    families = {f.name: f for f in ProviderCollector(router).collect()}
    [sent] = families["mailroom_provider_sent"].samples[:1]
    assert (sent.labels, sent.value) == ({"provider": "ses"}, 3.0)
    assert families["mailroom_provider_breaker_state"].samples[0].value == 0
    assert families["mailroom_provider_rate_per_second"].samples[0].value == 14.0


def test_the_worker_refuses_to_start_on_a_bad_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SMTP_PROVIDERS",
        "smtp://u:hunter2@a.example.com?name=a smtp://u:hunter2@b.example.com?name=a",
    )
    monkeypatch.delenv("SMTP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "Cannot start the worker" in result.output
    assert "two providers are named 'a' (option name)" in result.output
    assert "hunter2" not in result.output


def test_the_worker_refuses_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PROVIDERS", "smtp://a.example.com?name=a")
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "both SMTP_PROVIDERS and SMTP_HOST are set" in result.output
