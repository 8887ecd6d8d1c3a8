"""Checks of setting values, alone and taken together, with messages that name the variables.

Kept apart from Settings (mailroom.settings) so that the class reads as the list of
settings; the transport's provider URLs (SMTP_PROVIDERS) and API keys' own rate limits use
the same checks.
"""

from __future__ import annotations

import re
import ssl
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Protocol

from limits import parse as parse_rate_limit
from pydantic import SecretStr


class SmtpFields(Protocol):
    """The SMTP settings smtp_problems reads (mailroom.settings.Settings has them all)."""

    @property
    def smtp_username(self) -> str | None: ...
    @property
    def smtp_password(self) -> SecretStr | None: ...
    @property
    def smtp_security(self) -> str: ...
    @property
    def smtp_auth_mechanism(self) -> str: ...
    @property
    def smtp_allow_insecure_auth(self) -> bool: ...
    @property
    def smtp_ca_file(self) -> Path | None: ...
    @property
    def smtp_verify_cert(self) -> bool: ...
    @property
    def smtp_oauth2_token_url(self) -> str | None: ...
    @property
    def smtp_oauth2_client_id(self) -> str | None: ...
    @property
    def smtp_oauth2_client_secret(self) -> SecretStr | None: ...
    @property
    def smtp_oauth2_scope(self) -> str | None: ...
    @property
    def smtp_oauth2_token_command(self) -> str | None: ...


def smtp_problems(s: SmtpFields) -> list[str]:
    """What is wrong with the SMTP settings taken together (each names its variables)."""
    problems: list[str] = []
    url, command = s.smtp_oauth2_token_url, s.smtp_oauth2_token_command
    client = (s.smtp_oauth2_client_id, s.smtp_oauth2_client_secret)
    oauth2 = url is not None or command is not None
    password = s.smtp_password is not None
    mechanism = s.smtp_auth_mechanism
    if url is not None and command is not None:
        problems.append("set SMTP_OAUTH2_TOKEN_URL or SMTP_OAUTH2_TOKEN_COMMAND, not both")
    if url is not None and None in client:
        problems.append("SMTP_OAUTH2_TOKEN_URL needs SMTP_OAUTH2_CLIENT_ID and _CLIENT_SECRET")
    if url is None and (s.smtp_oauth2_scope is not None or client != (None, None)):
        problems.append("SMTP_OAUTH2_CLIENT_ID, _CLIENT_SECRET and _SCOPE need _TOKEN_URL")
    if s.smtp_username is None and (password or oauth2):
        problems.append(
            "SMTP_USERNAME and SMTP_PASSWORD must be set together"
            if password
            else "XOAUTH2 (SMTP_OAUTH2_*) needs SMTP_USERNAME, the mailbox to send as"
        )
    elif s.smtp_username is not None and not (password or oauth2):
        problems.append(
            "SMTP_USERNAME and SMTP_PASSWORD must be set together (or give an OAuth2 "
            "token source: SMTP_OAUTH2_TOKEN_URL or SMTP_OAUTH2_TOKEN_COMMAND)"
        )
    if mechanism == "xoauth2" and not oauth2:
        problems.append(
            "SMTP_AUTH_MECHANISM=xoauth2 needs SMTP_OAUTH2_TOKEN_URL or SMTP_OAUTH2_TOKEN_COMMAND"
        )
    if mechanism == "xoauth2" and password:
        problems.append("SMTP_PASSWORD is not used with SMTP_AUTH_MECHANISM=xoauth2: unset it")
    if mechanism in ("plain", "login") and not password:
        problems.append(f"SMTP_AUTH_MECHANISM={mechanism} needs SMTP_PASSWORD")
    if mechanism in ("plain", "login") and oauth2:
        problems.append(
            f"SMTP_OAUTH2_* are not used with SMTP_AUTH_MECHANISM={mechanism}: "
            "unset them or use auto"
        )
    if mechanism != "auto" and s.smtp_username is None:
        problems.append(f"SMTP_AUTH_MECHANISM={mechanism} needs SMTP_USERNAME")
    if s.smtp_security == "none" and s.smtp_username and not s.smtp_allow_insecure_auth:
        problems.append(
            "SMTP_SECURITY=none would send the SMTP credentials unencrypted: use "
            "SMTP_SECURITY=starttls or tls, or set SMTP_ALLOW_INSECURE_AUTH=true on a "
            "trusted network"
        )
    if s.smtp_ca_file is not None and not s.smtp_verify_cert:
        problems.append("SMTP_CA_FILE is pointless with SMTP_VERIFY_CERT=false: unset one")
    return problems


def check_ca_file(path: Path) -> None:
    """Raise ValueError unless ``path`` is a readable PEM bundle with at least one certificate."""
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{path} is not a PEM bundle of CA certificates ({exc})") from None


_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def is_ehlo_name(value: str) -> bool:
    """A domain, or an address literal as RFC 5321 §4.1.3 writes one: [192.0.2.1], [IPv6:…]."""
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        inner = inner[5:] if inner.lower().startswith("ipv6:") else inner
        try:
            ip_address(inner)
        except ValueError:
            return False
        return (":" in inner) == value[1:6].lower().startswith("ipv6:")
    return _DOMAIN.match(value) is not None


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


def parse_retry_schedule(value: str) -> tuple[float, ...]:
    """``5,300,1800`` → waits in seconds; raises ValueError on anything else."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise ValueError("give at least one wait, in seconds, comma-separated")
    try:
        delays = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"not a list of seconds: {value!r} (example: 5,300,1800)") from None
    if any(d <= 0 or d > 7 * 86_400 for d in delays):
        raise ValueError("each wait must be over 0 and at most 7 days (604800 s)")
    return delays
