"""The worker's SMTP client, built from the settings: the one place they meet.

``smtp_transport`` is what `mailroom worker` (and `mailroom dev` with SMTP_HOST set)
delivers through; it raises ``SmtpSetupError`` with a message naming the variable to
change when the settings cannot work, before anything connects.
"""

from __future__ import annotations

from dataclasses import replace

import structlog
from redis.asyncio import Redis

from mailroom.settings import Settings
from mailroom.transport.base import MailTransport
from mailroom.transport.oauth2 import ClientCredentials, TokenCommand
from mailroom.transport.pacing import Pacer
from mailroom.transport.provider_config import (
    OAuth2Options,
    ProviderConfig,
    ProviderConfigError,
    parse_providers,
)
from mailroom.transport.router import ProviderRouter
from mailroom.transport.smtp import SmtpTransport
from mailroom.transport.smtp_config import SmtpConfig, TokenSource

log = structlog.get_logger(__name__)


class SmtpSetupError(Exception):
    """The SMTP settings cannot work; the message says which variable to change."""


class MissingSmtpHost(SmtpSetupError):
    pass


def smtp_config(settings: Settings) -> SmtpConfig:
    """The worker's SMTP client settings (Settings has checked them together)."""
    if settings.smtp_host is None:
        raise MissingSmtpHost(
            "SMTP_HOST is not set: point it at your provider (e.g. smtp-relay.brevo.com), "
            "or run `mailroom dev`, which delivers to its own inbox"
        )
    secret = settings.smtp_password
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.effective_smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=secret.get_secret_value() if secret is not None else None,
        timeout=settings.smtp_timeout,
        data_timeout=settings.smtp_data_timeout,
        pool_size=settings.smtp_pool_size,
        idle_seconds=settings.smtp_pool_idle_seconds,
        verify_cert=settings.smtp_verify_cert,
        ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file is not None else None,
        allow_insecure_auth=settings.smtp_allow_insecure_auth,
        auth_mechanism=settings.smtp_auth_mechanism,
        oauth2=token_source(settings),
        ehlo_name=settings.smtp_ehlo_name,
    )


# The single-provider settings that SMTP_PROVIDERS replaces (each URL carries its own).
_SINGLE_PROVIDER = (
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "smtp_ca_file",
    "smtp_oauth2_token_url",
    "smtp_oauth2_client_id",
    "smtp_oauth2_client_secret",
    "smtp_oauth2_scope",
    "smtp_oauth2_token_command",
)


def provider_configs(settings: Settings) -> list[ProviderConfig]:
    """The providers to deliver through: SMTP_PROVIDERS, or SMTP_HOST… as a one-item list."""
    if settings.smtp_providers is None:
        return [ProviderConfig(name=settings.smtp_host or "smtp", smtp=smtp_config(settings))]
    both = [name.upper() for name in _SINGLE_PROVIDER if getattr(settings, name) is not None]
    if both:
        raise SmtpSetupError(
            f"both SMTP_PROVIDERS and {', '.join(both)} are set: keep SMTP_PROVIDERS (one URL "
            "per provider, credentials in the URL) and unset the others, or unset "
            "SMTP_PROVIDERS to use the single provider of SMTP_HOST"
        )
    defaults = SmtpConfig(
        host="",
        port=0,
        timeout=settings.smtp_timeout,
        data_timeout=settings.smtp_data_timeout,
        pool_size=settings.smtp_pool_size,
        idle_seconds=settings.smtp_pool_idle_seconds,
        ehlo_name=settings.smtp_ehlo_name,
    )
    try:
        providers = parse_providers(settings.smtp_providers.get_secret_value(), defaults)
    except ProviderConfigError as exc:
        raise SmtpSetupError(str(exc)) from None
    return [_with_token_source(p) for p in providers]


def _with_token_source(provider: ProviderConfig) -> ProviderConfig:
    options: OAuth2Options | None = provider.oauth2
    if options is None:
        return provider
    timeout = provider.smtp.timeout
    source: TokenSource
    if options.token_command is not None:
        source = TokenCommand(options.token_command, timeout=timeout)
    else:
        # provider_config refuses a token URL without its client id and secret.
        source = ClientCredentials(
            options.token_url or "",
            options.client_id or "",
            options.client_secret or "",
            options.scope,
            timeout=timeout,
        )
    return replace(provider, smtp=replace(provider.smtp, oauth2=source))


def token_source(settings: Settings) -> TokenSource | None:
    """Where XOAUTH2 tokens come from, if the settings name a source."""
    timeout = settings.smtp_timeout
    if settings.smtp_oauth2_token_command is not None:
        return TokenCommand(settings.smtp_oauth2_token_command, timeout=timeout)
    url, client_id = settings.smtp_oauth2_token_url, settings.smtp_oauth2_client_id
    secret = settings.smtp_oauth2_client_secret
    if url is None or client_id is None or secret is None:
        return None
    return ClientCredentials(
        url, client_id, secret.get_secret_value(), settings.smtp_oauth2_scope, timeout=timeout
    )


def smtp_transport(settings: Settings) -> MailTransport:
    """SMTP_HOST's SmtpTransport, or a ProviderRouter over SMTP_PROVIDERS."""
    if settings.smtp_providers is None:
        config = smtp_config(settings)
        _warn_unverified(config, "SMTP_VERIFY_CERT=false", "SMTP_CA_FILE")
        return SmtpTransport(config, name=config.host)
    providers = provider_configs(settings)
    for p in providers:
        _warn_unverified(p.smtp, f"verify_cert=false ({p.name})", "ca_file=", provider=p.name)
    client = Redis.from_url(
        settings.redis_url, socket_timeout=_PACING_TIMEOUT, socket_connect_timeout=_PACING_TIMEOUT
    )
    return ProviderRouter(
        [(p, SmtpTransport(p.smtp, name=p.name)) for p in providers],
        pacer=Pacer(client, settings.queue_prefix),
        cooldown=settings.provider_cooldown,
    )


# Pacing asks Redis once per email: a slow answer falls back to local pacing quickly.
_PACING_TIMEOUT = 1.0


def _warn_unverified(config: SmtpConfig, setting: str, instead: str, **fields: str) -> None:
    if not config.verify_cert:
        log.warning(
            "smtp.certificate_verification_off",
            host=config.host,
            hint=f"{setting}: anyone on the path can read and change the mail; "
            f"for a private CA set {instead} instead",
            **fields,
        )
