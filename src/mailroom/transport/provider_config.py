"""SMTP_PROVIDERS: several relays, each written as one URL, read into ``ProviderConfig``.

    smtp://user:pass@host:587?name=ses&weight=3&rate=14/second&daily=50000&pool=10

``smtps://`` means implicit TLS; credentials are URL-encoded. Every problem is reported
as ``ProviderConfigError`` naming the provider and the option, and never shows a
password: the message quotes the masked URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast, get_args
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

from mailroom.setting_checks import check_ca_file, is_ehlo_name
from mailroom.transport.smtp_config import Mechanism, Security, SmtpConfig

_DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}
_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour)s?\s*$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
MASK = "***"
Problem = Callable[[str, str, str], "ProviderConfigError"]


class ProviderConfigError(ValueError):
    """SMTP_PROVIDERS cannot work; the message names the provider and the option."""


@dataclass(frozen=True)
class Rate:
    """At most ``count`` messages per ``per`` seconds."""

    count: int
    per: float

    @property
    def per_second(self) -> float:
        return self.count / self.per

    def __str__(self) -> str:
        unit = next(name for name, seconds in _UNITS.items() if seconds == self.per)
        return f"{self.count}/{unit}"


@dataclass(frozen=True)
class OAuth2Options:
    """Where a provider's XOAUTH2 tokens come from (built into a TokenSource at start)."""

    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None
    token_command: str | None = None


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    smtp: SmtpConfig
    weight: int = 1
    rate: Rate | None = None
    daily: int | None = None
    # Only emails whose From is at one of these domains go here (empty: any).
    from_domains: tuple[str, ...] = ()
    oauth2: OAuth2Options | None = None

    def accepts(self, sender_domain: str) -> bool:
        return not self.from_domains or sender_domain.lower() in self.from_domains

    def masked_url(self) -> str:
        """The provider as a URL with its password (and client secret) masked."""
        smtp = self.smtp
        scheme = "smtps" if smtp.security == "tls" else "smtp"
        user = ""
        if smtp.username is not None:
            user = quote(smtp.username, safe="")
            user += f":{MASK}@" if smtp.password is not None else "@"
        options = [f"name={self.name}", f"weight={self.weight}"]
        if smtp.security != "tls":
            options.append(f"security={smtp.security}")
        if self.rate is not None:
            options.append(f"rate={self.rate}")
        if self.daily is not None:
            options.append(f"daily={self.daily}")
        options.append(f"pool={smtp.pool_size}")
        options.extend(f"from=@{domain}" for domain in self.from_domains)
        return f"{scheme}://{user}{smtp.host}:{smtp.port}?{'&'.join(options)}"


def split_urls(text: str) -> list[str]:
    """The provider URLs of SMTP_PROVIDERS (separated by commas or whitespace)."""
    return [part for part in re.split(r"[\s,]+", text) if part]


def parse_rate(value: str) -> Rate:
    match = _RATE.match(value)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{value!r} is not a rate: use e.g. 14/second, 30/minute or 1000/hour")
    return Rate(int(match.group(1)), _UNITS[match.group(2).lower()])


def mask_url(url: str) -> str:
    """``url`` with the password in its user part replaced by ``***`` (for messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK if "@" in url else url
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    masked = f"{scheme}://{userinfo}{at}{host}"
    return re.sub(r"(client_secret=)[^&]*", rf"\g<1>{MASK}", masked)


def parse_providers(text: str, defaults: SmtpConfig) -> list[ProviderConfig]:
    """Every provider of SMTP_PROVIDERS; timing defaults come from ``defaults``."""
    urls = split_urls(text)
    if not urls:
        raise ProviderConfigError("SMTP_PROVIDERS is set but lists no provider URL")
    providers = [parse_provider(url, defaults, index) for index, url in enumerate(urls, 1)]
    seen: set[str] = set()
    for p in providers:
        if p.name in seen:
            raise ProviderConfigError(
                f"SMTP_PROVIDERS: two providers are named {p.name!r} (option name): "
                "give each a distinct name=..."
            )
        seen.add(p.name)
    if sum(p.weight for p in providers) == 0:
        raise ProviderConfigError(
            "SMTP_PROVIDERS: the weights sum to 0 (option weight): at least one provider "
            "needs weight=1 or more"
        )
    return providers


def parse_provider(url: str, defaults: SmtpConfig, index: int = 1) -> ProviderConfig:
    masked = mask_url(url)

    def problem(name: str, option: str, message: str) -> ProviderConfigError:
        return ProviderConfigError(
            f"SMTP_PROVIDERS provider {name!r} ({masked}), option {option}: {message}"
        )

    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        return _raise(problem(f"#{index}", "url", f"not a valid URL ({exc})"))
    if parts.scheme not in ("smtp", "smtps") or not host:
        raise problem(
            f"#{index}",
            "url",
            "not a provider URL: write smtp://[user:pass@]host[:port]?options "
            "(smtps:// for implicit TLS)",
        )
    options: dict[str, str] = {}
    from_domains: list[str] = []
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise problem(f"#{index}", "query", "cannot read the options after '?'") from None
    for key, value in pairs:
        if key == "from":
            from_domains.append(value)
        elif key in options:
            raise problem(options.get("name", host), key, "given twice")
        else:
            options[key] = value
    name = options.pop("name", host)
    if not _NAME.match(name):
        raise problem(name, "name", "use letters, digits, '.', '_' or '-' (at most 63)")
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise problem(
            name, unknown[0], f"unknown option (known: from, name, {', '.join(sorted(_KNOWN))})"
        )
    return _build(name, parts.scheme, host, port, parts, options, from_domains, defaults, problem)


_KNOWN = frozenset(
    {
        "security", "weight", "rate", "daily", "pool", "ca_file", "verify_cert", "timeout",
        "data_timeout", "idle_seconds", "auth_mechanism", "allow_insecure_auth", "ehlo_name",
        "oauth2_token_url", "oauth2_client_id", "oauth2_client_secret", "oauth2_scope",
        "oauth2_token_command",
    }
)  # fmt: skip


def _raise(error: ProviderConfigError) -> ProviderConfig:
    raise error


def _build(
    name: str,
    scheme: str,
    host: str,
    port: int | None,
    parts: SplitResult,
    options: dict[str, str],
    from_domains: list[str],
    defaults: SmtpConfig,
    fail: Problem,
) -> ProviderConfig:

    def integer(option: str, low: int, high: int) -> int | None:
        if option not in options:
            return None
        value = options[option]
        if not value.isdigit() or not low <= int(value) <= high:
            raise fail(name, option, f"{value!r} is not a whole number from {low} to {high}")
        return int(value)

    def seconds(option: str, default: float) -> float:
        if option not in options:
            return default
        try:
            value = float(options[option])
        except ValueError:
            value = -1.0
        if not 0 < value <= 3600:
            raise fail(name, option, f"{options[option]!r} is not a number of seconds (0 to 3600)")
        return value

    def boolean(option: str, default: bool) -> bool:
        value = options.get(option, "").lower()
        if option not in options:
            return default
        if value not in _TRUE | _FALSE:
            raise fail(name, option, f"{options[option]!r} is not true or false")
        return value in _TRUE

    security_text = options.get("security", "tls" if scheme == "smtps" else "starttls")
    if security_text not in get_args(Security):
        raise fail(name, "security", f"{security_text!r} is not none, starttls or tls")
    security = cast(Security, security_text)
    if scheme == "smtps" and security != "tls":
        raise fail(name, "security", "smtps:// is implicit TLS: drop security= or use smtp://")
    rate = None
    if "rate" in options:
        try:
            rate = parse_rate(options["rate"])
        except ValueError as exc:
            raise fail(name, "rate", str(exc)) from None
    weight = integer("weight", 0, 1000)
    daily = integer("daily", 1, 1_000_000_000)
    pool = integer("pool", 1, 200)
    domains = []
    for value in from_domains:
        domain = value.removeprefix("@").lower()
        if not value.startswith("@") or not is_ehlo_name(domain) or domain.startswith("["):
            raise fail(name, "from", f"{value!r} is not a domain rule: write from=@example.com")
        domains.append(domain)
    ca_file = options.get("ca_file")
    if ca_file is not None:
        try:
            check_ca_file(Path(ca_file))
        except ValueError as exc:
            raise fail(name, "ca_file", str(exc)) from None
    verify_cert = boolean("verify_cert", True)
    if ca_file is not None and not verify_cert:
        raise fail(name, "verify_cert", "ca_file is pointless with verify_cert=false: drop one")
    ehlo_name = options.get("ehlo_name", defaults.ehlo_name)
    if ehlo_name is not None and not is_ehlo_name(ehlo_name):
        raise fail(name, "ehlo_name", f"{ehlo_name!r} is not a domain or an address literal")
    mechanism = options.get("auth_mechanism", "auto")
    if mechanism not in get_args(Mechanism):
        raise fail(name, "auth_mechanism", f"{mechanism!r} is not auto, plain, login or xoauth2")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    oauth2 = _oauth2(name, options, fail)
    if username is None and (password is not None or oauth2 is not None):
        raise fail(name, "url", "credentials need a user name: smtp://user:pass@host")
    if username is not None and password is None and oauth2 is None:
        raise fail(name, "url", "a user name needs a password (user:pass@) or oauth2_* options")
    if mechanism == "xoauth2" and oauth2 is None:
        raise fail(name, "auth_mechanism", "xoauth2 needs oauth2_token_url or oauth2_token_command")
    allow_insecure = boolean("allow_insecure_auth", False)
    if security == "none" and username is not None and not allow_insecure:
        raise fail(
            name, "security", "none would send the credentials unencrypted: use starttls or tls, "
            "or allow_insecure_auth=true on a trusted network"
        )  # fmt: skip
    smtp = replace(
        defaults,
        host=host,
        port=port or _DEFAULT_PORTS[security],
        security=security,
        username=username,
        password=password,
        timeout=seconds("timeout", defaults.timeout),
        data_timeout=seconds("data_timeout", defaults.data_timeout),
        idle_seconds=seconds("idle_seconds", defaults.idle_seconds),
        pool_size=pool if pool is not None else defaults.pool_size,
        verify_cert=verify_cert,
        ca_file=ca_file,
        allow_insecure_auth=allow_insecure,
        auth_mechanism=cast(Mechanism, mechanism),
        oauth2=None,
        ehlo_name=ehlo_name,
    )
    return ProviderConfig(
        name=name,
        smtp=smtp,
        weight=1 if weight is None else weight,
        rate=rate,
        daily=daily,
        from_domains=tuple(domains),
        oauth2=oauth2,
    )


def _oauth2(name: str, options: dict[str, str], fail: Problem) -> OAuth2Options | None:
    url, command = options.get("oauth2_token_url"), options.get("oauth2_token_command")
    client_id, secret = options.get("oauth2_client_id"), options.get("oauth2_client_secret")
    scope = options.get("oauth2_scope")
    if url is None and command is None:
        if client_id is not None or secret is not None or scope is not None:
            raise fail(name, "oauth2_client_id", "oauth2_client_* and _scope need oauth2_token_url")
        return None
    if url is not None and command is not None:
        raise fail(name, "oauth2_token_url", "give oauth2_token_url or oauth2_token_command")
    if url is not None:
        target = urlsplit(url)
        local = target.hostname in ("localhost", "127.0.0.1", "::1")
        if target.scheme != "https" and not (target.scheme == "http" and local):
            raise fail(name, "oauth2_token_url", "must be https:// (http:// only for localhost)")
        if client_id is None or secret is None:
            raise fail(name, "oauth2_client_id", "oauth2_token_url needs client id and secret")
    return OAuth2Options(url, client_id, secret, scope, command)
