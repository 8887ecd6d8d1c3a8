"""One place that reads and validates configuration.

Everything comes from the environment (and an optional ``.env`` file). A bad value
stops the process at start-up with a message naming the variable, rather than
surfacing later as a failed delivery.
"""

from __future__ import annotations

import shlex
from email.utils import parseaddr
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mailroom.registry_timing import timing_problems
from mailroom.setting_checks import (
    check_ca_file,
    is_ehlo_name,
    parse_networks,
    parse_retry_schedule,
    smtp_problems,
    validate_rate_limit,
)

SmtpSecurity = Literal["none", "starttls", "tls"]
SmtpMechanism = Literal["auto", "plain", "login", "xoauth2"]

_DEFAULT_SMTP_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}


class Settings(BaseSettings):
    """Mailroom's configuration; field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/mailroom"
    redis_url: str = "redis://127.0.0.1:6379/0"

    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: SmtpSecurity = "starttls"
    smtp_timeout: float = Field(default=30.0, gt=0, le=600)
    smtp_pool_size: int = Field(default=10, ge=1, le=200)
    # -- SMTP: security, authentication, timing (checked together in _smtp_problems) --
    # AUTH over a connection that is not encrypted (SMTP_SECURITY=none): refused unless true.
    smtp_allow_insecure_auth: bool = False
    # A PEM bundle of the CAs to trust for the SMTP server's certificate (a private relay),
    # instead of the system's; the certificate and host name are still checked.
    smtp_ca_file: Path | None = None
    # false: no certificate or host name check at all (development only; warned at start).
    smtp_verify_cert: bool = True
    # Seconds to wait for the reply to the final dot (RFC 5321 §4.5.3.2.6: 10 minutes).
    smtp_data_timeout: float = Field(default=600.0, gt=0, le=3600)
    # Pooled connections idle longer than this are closed instead of reused.
    smtp_pool_idle_seconds: float = Field(default=20.0, gt=0, le=3600)
    smtp_auth_mechanism: SmtpMechanism = "auto"
    # XOAUTH2 tokens from a client-credentials endpoint, or from a command that prints one.
    smtp_oauth2_token_url: str | None = None
    smtp_oauth2_client_id: str | None = None
    smtp_oauth2_client_secret: SecretStr | None = None
    smtp_oauth2_scope: str | None = None
    smtp_oauth2_token_command: str | None = None
    # The name given in EHLO/HELO (default: the machine's FQDN, else an address literal).
    smtp_ehlo_name: str | None = None
    # -- Several providers: SMTP_PROVIDERS lists relays as URLs (transport.provider_config);
    # a secret, since the URLs carry passwords. PROVIDER_COOLDOWN: seconds a failing
    # provider is left alone before one email probes it again.
    smtp_providers: SecretStr | None = None
    provider_cooldown: float = Field(default=30.0, gt=0, le=3600)

    mail_from: str = "Mailroom <no-reply@example.com>"
    message_id_domain: str | None = None

    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff_base: float = Field(default=30.0, gt=0)
    retry_backoff_max: float = Field(default=3600.0, gt=0)

    worker_concurrency: int = Field(default=20, ge=1, le=1000)
    # Emails per queued job for POST /send/batch (a batch of 500 becomes 10 jobs of 50).
    batch_job_size: int = Field(default=50, ge=1, le=500)
    # Touched every few seconds by a running worker; `mailroom health --worker` (the
    # container health check) reads its age. None (an empty value) turns it off.
    worker_heartbeat_file: Path | None = Path("/tmp/mailroom-worker.heartbeat")  # noqa: S108
    # The worker's Prometheus metrics (GET /metrics, no authentication) on this port; 0 turns
    # it off. `--processes N` gives the N processes this port and the N - 1 after it.
    worker_metrics_port: int = Field(default=9102, ge=0, le=65535)
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    queue_name: str = "mailroom-delivery"
    queue_prefix: str = "mailroom"
    # How long to wait for Redis when handing a job over. The email is already
    # committed, so a slow Redis must not hold the HTTP response hostage.
    enqueue_timeout: float = Field(default=2.0, gt=0, le=60)

    # The sweeper re-dispatches emails whose job Redis lost.
    sweep_interval: float = Field(default=5.0, gt=0)
    sweep_grace: float = Field(default=60.0, ge=0)
    sweep_batch_size: int = Field(default=500, ge=1, le=10_000)
    # A claim older than this is presumed abandoned (worker killed mid-send).
    # It must comfortably exceed a whole SMTP transaction (connect + several commands).
    sending_lease: float = Field(default=300.0, gt=0)
    # Each worker process renews its heartbeat (`workers`) this often; another worker takes
    # its `sending` emails over once it is WORKER_TAKEOVER_AFTER old, not after SENDING_LEASE.
    worker_registry_interval: float = Field(default=3.0, gt=0, le=600)
    worker_takeover_after: float = Field(default=10.0, gt=0, le=3600)

    # The worker deletes final (sent, failed, cancelled) emails older than this many
    # days, with their attempts, every hour; 0 (or empty) never purges automatically.
    retention_days: int = Field(default=0, ge=0, le=36_500)
    # Emails deleted per transaction by the purge (the worker's and `mailroom purge`).
    purge_batch_size: int = Field(default=1000, ge=1, le=10_000)

    # Requests per API key on POST /send (per client IP when authentication fails),
    # shared by every API process through Redis. "100/second", "6000/minute", ...
    send_rate_limit: str = "100/second"
    # Peers allowed to set X-Forwarded-For: comma-separated IPs or CIDR ranges.
    trusted_proxies: str = ""
    # Largest request body accepted; larger ones get 413 before they are parsed.
    # Room for MAX_ATTACHMENTS_BYTES of attachments, which base64 makes 4/3 as large.
    max_body_bytes: int = Field(default=15 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    max_batch_body_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Attachments of one email, after decoding: each one, and all of them together.
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=100 * 1024 * 1024)
    max_attachments_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=100 * 1024 * 1024)
    # Browser origins allowed by CORS, comma-separated; empty means CORS stays off.
    cors_origins: str = ""
    # How long an API key lookup is cached per process (so a revocation takes this long).
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Slow clients: a request's head (request line and headers) must arrive within this many
    # seconds of the connection opening or of its first byte, its body within this many
    # seconds of its head; past either, 408 and the connection is closed.
    request_header_timeout: float = Field(default=10.0, gt=0, le=300)
    request_body_timeout: float = Field(default=60.0, gt=0, le=3600)
    # Connections one API process holds at once; a request beyond them gets 503 at once.
    max_connections: int = Field(default=500, ge=1, le=100_000)
    # Dashboard (/dashboard): hours a sign-in lasts, and the key signing its session cookies
    # (unset: a random one made once and kept in the database, shared by every process).
    dashboard_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    dashboard_secret: SecretStr | None = Field(default=None, min_length=32)

    # Bounces and suppressions (README): one suppression list per project or a shared one;
    # the feedback endpoints' secrets (unset: that endpoint is off, 404); the VERP domain.
    suppression_scope: Literal["project", "global"] = "project"
    feedback_postmark_token: SecretStr | None = None
    feedback_brevo_token: SecretStr | None = None
    feedback_mailgun_signing_key: SecretStr | None = None
    feedback_ses_topic_arns: str = ""  # comma-separated: the only SNS topics taken
    bounce_domain: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")

    # -- Webhooks (signed status events; see mailroom.webhooks) --
    # Seconds a receiver has to answer one request (connect, send, the first 4 KB of reply).
    webhook_timeout: float = Field(default=15.0, gt=0, le=120)
    # Waits after each failed attempt, in seconds (about three days in all); one more
    # attempt than waits. Each wait is jittered by up to 10 %.
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,50400,72000,86400"
    # An endpoint whose every attempt has failed for this long is disabled (reason kept).
    webhook_disable_after: float = Field(default=5 * 86_400.0, gt=0)
    # After a secret rotation, requests carry signatures by the old secret this long too.
    webhook_secret_overlap: float = Field(default=86_400.0, ge=0)
    # Plain http:// endpoint URLs, and loopback/private/link-local destinations (both are
    # refused by default: a receiver must be public and TLS; `mailroom dev` allows both).
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_max_endpoints: int = Field(default=20, ge=1, le=1000)
    # Delivery attempts (the deliveries log) are kept this many days.
    webhook_log_days: int = Field(default=30, ge=1, le=36_500)
    webhook_queue_name: str = "mailroom-webhooks"
    # Webhook requests in flight in one worker process (also its connection pool's size).
    webhook_concurrency: int = Field(default=200, ge=1, le=1000)
    # How often the worker looks for deliveries that are due (new events, retries, lost jobs).
    webhook_poll_interval: float = Field(default=0.5, gt=0, le=60)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or not rest:
            raise ValueError("must be a URL such as postgresql+asyncpg://user@host:5432/mailroom")
        # Hosted providers hand out plain postgres:// URLs; the driver is always asyncpg.
        if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
            return f"postgresql+asyncpg://{rest}"
        raise ValueError(f"unsupported scheme {scheme!r}: use postgresql+asyncpg://")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator(
        "smtp_host",
        "smtp_username",
        "message_id_domain",
        "worker_heartbeat_file",
        "smtp_ca_file",
        "smtp_oauth2_token_url",
        "smtp_oauth2_client_id",
        "smtp_oauth2_client_secret",
        "smtp_oauth2_scope",
        "smtp_oauth2_token_command",
        "smtp_ehlo_name",
        "dashboard_secret",
        "feedback_postmark_token",
        "feedback_brevo_token",
        "feedback_mailgun_signing_key",
        "bounce_domain",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_port", "smtp_password", "smtp_providers", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _blank_is_zero(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_webhook_retry_schedule(cls, value: str) -> str:
        parse_retry_schedule(value)
        return value

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        return parse_retry_schedule(self.webhook_retry_schedule)

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        # The same rules as a request's "from", so the default sender can always be used.
        from mailroom.addresses import parse_mailbox

        return parse_mailbox(value).header

    @field_validator("smtp_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_file(value)
        return value

    @field_validator("smtp_ehlo_name")
    @classmethod
    def _ehlo_name(cls, value: str | None) -> str | None:
        if value is not None and not is_ehlo_name(value):
            raise ValueError(
                "must be a domain name (mail.example.com) or an address literal ([192.0.2.1])"
            )
        return value

    @field_validator("smtp_oauth2_token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            local = parts.hostname in ("localhost", "127.0.0.1", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and local):
                raise ValueError("must be an https:// URL (http:// only for localhost)")
        return value

    @field_validator("smtp_oauth2_token_command")
    @classmethod
    def _token_command(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split into a command line: {exc}") from None
        return value

    @field_validator("send_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        return validate_rate_limit(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.retry_backoff_max < self.retry_backoff_base:
            raise ValueError("RETRY_BACKOFF_MAX must be at least RETRY_BACKOFF_BASE")
        problems = smtp_problems(self) + timing_problems(
            heartbeat=self.worker_registry_interval,
            takeover=self.worker_takeover_after,
            lease=self.sending_lease,
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def effective_smtp_port(self) -> int:
        return self.smtp_port or _DEFAULT_SMTP_PORTS[self.smtp_security]

    @property
    def sender_domain(self) -> str:
        return parseaddr(self.mail_from)[1].rpartition("@")[2]


class ConfigurationError(Exception):
    """Raised when the environment holds an invalid setting; the message is for humans."""


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["Invalid configuration:"]
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, raising ConfigurationError with a readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import time)."""
    return load_settings()
