"""What ``SmtpTransport`` is told about its server: address, security, credentials, timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Security = Literal["none", "starttls", "tls"]
Mechanism = Literal["auto", "plain", "login", "xoauth2"]


class TokenSource(Protocol):
    """Where XOAUTH2 access tokens come from (``transport.oauth2``)."""

    async def token(self) -> str:
        """A token believed valid; raises ``TokenError`` when none can be had."""
        ...

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next ``token()`` fetches a new one."""
        ...


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Security = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Seconds for each reply, the TCP and TLS handshakes, and any stall of the upload.
    timeout: float = 30.0
    # Seconds for the reply to the final dot (RFC 5321 §4.5.3.2.6: 10 minutes).
    data_timeout: float = 600.0
    pool_size: int = 10
    # A pooled connection idle longer than this is closed rather than reused: NATs and
    # firewalls drop idle flows without a word, and servers hang up on idle clients.
    idle_seconds: float = 20.0
    verify_cert: bool = True
    ca_file: str | None = None  # a PEM bundle trusted instead of the system's
    # AUTH on a connection that is not encrypted, only when asked for on purpose.
    allow_insecure_auth: bool = False
    auth_mechanism: Mechanism = "auto"
    oauth2: TokenSource | None = field(default=None, repr=False)
    ehlo_name: str | None = None  # default: the machine's FQDN, or an address literal
    # Off only to measure what PIPELINING buys (bench); servers that offer it get it.
    pipelining: bool = True

    @property
    def has_credentials(self) -> bool:
        return self.username is not None and (self.password is not None or self.oauth2 is not None)
