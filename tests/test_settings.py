"""Configuration: defaults, normalisation and the start-up errors that name the variable."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import SecretStr

from mailroom.settings import ConfigurationError, Settings, load_settings


@pytest.fixture(autouse=True)
def _no_mailroom_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment without any Mailroom variable."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)


def settings(**overrides: Any) -> Settings:
    return load_settings(_env_file=None, **overrides)


def config_error(**overrides: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        settings(**overrides)
    message = str(caught.value)
    assert message.startswith("Invalid configuration:\n")
    return message


# -- defaults -----------------------------------------------------------------------------


def test_defaults() -> None:
    s = settings()
    assert s.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/mailroom"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.smtp_host is None
    assert s.smtp_port is None
    assert s.smtp_username is None
    assert s.smtp_password is None
    assert s.smtp_security == "starttls"
    assert s.effective_smtp_port == 587
    assert s.smtp_timeout == 30.0
    assert s.smtp_pool_size == 10
    assert s.mail_from == "Mailroom <no-reply@example.com>"
    assert s.sender_domain == "example.com"
    assert s.message_id_domain is None
    assert s.max_attempts == 5
    assert s.retry_backoff_base == 30.0
    assert s.retry_backoff_max == 3600.0
    assert s.worker_concurrency == 20
    assert s.queue_name == "mailroom-delivery"
    assert s.queue_prefix == "mailroom"
    assert s.enqueue_timeout == 2.0
    assert s.sweep_interval == 5.0
    assert s.worker_registry_interval == 3.0
    assert s.worker_takeover_after == 10.0
    assert s.sweep_grace == 60.0
    assert s.sweep_batch_size == 500
    assert s.sending_lease == 300.0
    assert s.log_level == "INFO"
    assert s.log_format == "console"


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(ValueError, match="frozen"):
        setattr(s, "max_attempts", 3)  # noqa: B010


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("SMTP_PORT", "2525")
    monkeypatch.setenv("SMTP_SECURITY", "tls")
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("MAX_ATTEMPTS", "8")
    monkeypatch.setenv("RETRY_BACKOFF_BASE", "1.5")
    monkeypatch.setenv("RETRY_BACKOFF_MAX", "90")
    monkeypatch.setenv("LOG_FORMAT", "json")
    s = settings()
    assert s.smtp_host == "smtp.example.com"
    assert s.smtp_port == 2525
    assert s.effective_smtp_port == 2525
    assert s.smtp_security == "tls"
    assert s.smtp_username == "mailer"
    assert isinstance(s.smtp_password, SecretStr)
    assert s.smtp_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.max_attempts == 8
    assert s.retry_backoff_base == 1.5
    assert s.retry_backoff_max == 90.0
    assert s.log_format == "json"


def test_keyword_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "8")
    assert settings(max_attempts=3).max_attempts == 3


# -- DATABASE_URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("postgres://u:p@db:5432/mail", "postgresql+asyncpg://u:p@db:5432/mail"),
        ("postgresql://u:p@db:5432/mail", "postgresql+asyncpg://u:p@db:5432/mail"),
        ("postgresql+asyncpg://u@db/mail", "postgresql+asyncpg://u@db/mail"),
        ("postgres://db/mail?sslmode=require", "postgresql+asyncpg://db/mail?sslmode=require"),
    ],
)
def test_database_url_is_normalised(
    monkeypatch: pytest.MonkeyPatch, url: str, normalised: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert settings().database_url == normalised


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@db/mail",
        "postgresql+psycopg://u@db/mail",
        "sqlite:///mail.db",
        "http://db/mail",
        "db:5432/mail",
        "postgres://",
        "",
    ],
)
def test_bad_database_url_names_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    message = config_error()
    assert "DATABASE_URL:" in message


def test_unsupported_scheme_is_named() -> None:
    message = config_error(database_url="mysql://u@db/mail")
    assert message == (
        "Invalid configuration:\n  DATABASE_URL: unsupported scheme 'mysql': use postgresql+asyncpg://"
    )


# -- REDIS_URL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://user:pw@cache.example.com:6380/1", "unix:///tmp/r.sock"],
)
def test_good_redis_urls(url: str) -> None:
    assert settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("url", ["http://localhost:6379", "localhost:6379", "", "memcached://x"])
def test_bad_redis_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    message = config_error()
    assert "REDIS_URL: must start with redis://, rediss:// or unix://" in message


# -- SMTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ssl", "STARTTLS", "", "true"])
def test_invalid_smtp_security(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SMTP_SECURITY", value)
    assert "SMTP_SECURITY:" in config_error()


@pytest.mark.parametrize(("security", "port"), [("none", 25), ("starttls", 587), ("tls", 465)])
def test_effective_smtp_port_follows_security(
    monkeypatch: pytest.MonkeyPatch, security: str, port: int
) -> None:
    monkeypatch.setenv("SMTP_SECURITY", security)
    s = settings()
    assert s.smtp_security == security
    assert s.smtp_port is None
    assert s.effective_smtp_port == port


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_explicit_smtp_port_wins(monkeypatch: pytest.MonkeyPatch, security: str) -> None:
    monkeypatch.setenv("SMTP_SECURITY", security)
    monkeypatch.setenv("SMTP_PORT", "2525")
    assert settings().effective_smtp_port == 2525


def test_blank_smtp_port_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PORT", "  ")
    monkeypatch.setenv("SMTP_SECURITY", "tls")
    s = settings()
    assert s.smtp_port is None
    assert s.effective_smtp_port == 465


@pytest.mark.parametrize("port", ["0", "65536", "-1", "smtp"])
def test_bad_smtp_port(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("SMTP_PORT", port)
    assert "SMTP_PORT:" in config_error()


@pytest.mark.parametrize("host", ["", "   ", "\t"])
def test_blank_smtp_host_means_none(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("SMTP_HOST", host)
    assert settings().smtp_host is None


def test_username_without_password_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    assert "SMTP_USERNAME and SMTP_PASSWORD must be set together" in config_error()


def test_password_without_username_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    message = config_error()
    assert "SMTP_USERNAME and SMTP_PASSWORD must be set together" in message
    assert "s3cret" not in message


def test_blank_username_and_password_mean_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_USERNAME", " ")
    monkeypatch.setenv("SMTP_PASSWORD", "")
    s = settings()
    assert s.smtp_username is None
    assert s.smtp_password is None


def test_username_with_blank_password_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "   ")
    assert "must be set together" in config_error()


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "101", "many"])
def test_bad_max_attempts(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", value)
    assert "MAX_ATTEMPTS:" in config_error()


@pytest.mark.parametrize("value", [1, 100])
def test_max_attempts_bounds(value: int) -> None:
    assert settings(max_attempts=value).max_attempts == value


def test_backoff_max_below_base_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_BACKOFF_BASE", "60")
    monkeypatch.setenv("RETRY_BACKOFF_MAX", "30")
    assert "RETRY_BACKOFF_MAX must be at least RETRY_BACKOFF_BASE" in config_error()


def test_backoff_max_equal_to_base_is_fine() -> None:
    s = settings(retry_backoff_base=10, retry_backoff_max=10)
    assert s.retry_backoff_max == s.retry_backoff_base == 10.0


@pytest.mark.parametrize("name", ["RETRY_BACKOFF_BASE", "RETRY_BACKOFF_MAX"])
def test_backoff_must_be_positive(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0")
    assert f"{name}:" in config_error()


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://db")
    monkeypatch.setenv("REDIS_URL", "http://cache")
    monkeypatch.setenv("MAX_ATTEMPTS", "0")
    message = config_error()
    assert re.search(r"^  DATABASE_URL: ", message, re.MULTILINE)
    assert re.search(r"^  REDIS_URL: ", message, re.MULTILINE)
    assert re.search(r"^  MAX_ATTEMPTS: ", message, re.MULTILINE)


# -- MAIL_FROM ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalised", "domain"),
    [
        ("no-reply@acme.com", "no-reply@acme.com", "acme.com"),
        ("Acme <no-reply@acme.com>", "Acme <no-reply@acme.com>", "acme.com"),
        ('"Acme, Inc." <no-reply@acme.com>', '"Acme, Inc." <no-reply@acme.com>', "acme.com"),
        ("  Acme   <no-reply@mail.acme.com>  ", "Acme <no-reply@mail.acme.com>", "mail.acme.com"),
    ],
)
def test_mail_from(
    monkeypatch: pytest.MonkeyPatch, value: str, normalised: str, domain: str
) -> None:
    monkeypatch.setenv("MAIL_FROM", value)
    s = settings()
    assert s.mail_from == normalised
    assert s.sender_domain == domain


@pytest.mark.parametrize(
    "value",
    [
        "",
        "no-reply",
        "Acme",
        "not an address",
        "Acme <>",
        "no-reply@localhost",
        "no-reply@acme.test",
        "no reply@acme.com",
    ],
)
def test_invalid_mail_from_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MAIL_FROM", value)
    assert "MAIL_FROM:" in config_error()


@pytest.mark.parametrize("value", ["jürgen@example.com", "Jürgen <jürgen@example.com>"])
def test_mail_from_follows_the_rules_of_a_requests_from(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Internationalized local parts are accepted everywhere (sent with SMTPUTF8).
    monkeypatch.setenv("MAIL_FROM", value)
    assert settings().mail_from == value


@pytest.mark.parametrize("domain", ["", "  "])
def test_blank_message_id_domain_means_none(monkeypatch: pytest.MonkeyPatch, domain: str) -> None:
    monkeypatch.setenv("MESSAGE_ID_DOMAIN", domain)
    assert settings().message_id_domain is None


@pytest.mark.parametrize(("name", "value"), [("LOG_LEVEL", "TRACE"), ("LOG_FORMAT", "xml")])
def test_bad_logging_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert f"{name}:" in config_error()


def test_takeover_window_shorter_than_two_heartbeats_is_rejected() -> None:
    message = config_error(worker_registry_interval=6, worker_takeover_after=10)
    assert "WORKER_TAKEOVER_AFTER must be at least twice WORKER_REGISTRY_INTERVAL" in message
    assert "got 10 s and 6 s" in message


def test_lease_shorter_than_the_heartbeat_is_rejected() -> None:
    message = config_error(worker_registry_interval=3, sending_lease=2)
    assert "SENDING_LEASE must be at least WORKER_REGISTRY_INTERVAL" in message
