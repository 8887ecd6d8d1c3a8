"""One place that reads and validates configuration.

Everything comes from the environment (and an optional ``.env`` file). A bad value
stops the process at start-up with a message naming the variable, rather than
surfacing later as a failed delivery.
"""

from __future__ import annotations

from email.utils import parseaddr
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SmtpSecurity = Literal["none", "starttls", "tls"]

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
    sweep_interval: float = Field(default=30.0, gt=0)
    sweep_grace: float = Field(default=60.0, ge=0)
    sweep_batch_size: int = Field(default=500, ge=1, le=10_000)
    # A claim older than this is presumed abandoned (worker killed mid-send).
    # It must comfortably exceed a whole SMTP transaction (connect + several commands).
    sending_lease: float = Field(default=300.0, gt=0)

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
        "smtp_host", "smtp_username", "message_id_domain", "worker_heartbeat_file", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_port", "smtp_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _blank_is_zero(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        # The same rules as a request's "from", so the default sender can always be used.
        from mailroom.addresses import parse_mailbox

        return parse_mailbox(value).header

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
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD must be set together")
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


def validate_rate_limit(value: str) -> str:
    """A rate limit such as ``100/second``; raises ValueError with an example otherwise."""
    try:
        if parse_rate_limit(value).amount < 1:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate limit: use e.g. '100/second' or '6000/minute'"
        ) from None
    return value


def parse_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    networks = []
    for part in value.split(","):
        if part.strip():
            try:
                networks.append(ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address or CIDR range") from None
    return tuple(networks)


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
