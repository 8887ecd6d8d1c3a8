"""The `mailroom` command: help, configuration errors, and what it refuses to start without."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mailroom.cli import app
from mailroom.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    get_settings.cache_clear()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("api", "worker", "migrate", "dev"):
        assert command in result.output


def test_a_bad_setting_stops_start_up_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "zero")
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 2
    assert "MAX_ATTEMPTS" in result.output
    assert "Traceback" not in result.output


def test_the_worker_refuses_to_start_without_an_smtp_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    monkeypatch.setenv("SMTP_HOST", "")
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "SMTP_HOST is not set" in result.output


def test_the_worker_refuses_to_send_credentials_unencrypted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("SMTP_SECURITY", "none")
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret-password")
    monkeypatch.delenv("SMTP_ALLOW_INSECURE_AUTH", raising=False)
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "SMTP_ALLOW_INSECURE_AUTH=true" in result.output
    assert "s3cret-password" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_importing_the_package_connects_to_nothing() -> None:
    # Unreachable services must not matter at import time.
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    code = (
        "import mailroom.cli, mailroom.api.app, mailroom.worker.runner, mailroom.devserver;"
        "from mailroom.api.app import create_app; create_app()"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
