"""The transport interface and the values that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Stage(StrEnum):
    """Where in the SMTP conversation a reply or fault happened."""

    CONNECT = "connect"  # TCP, greeting, EHLO, STARTTLS, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # 2xx after the final dot: the server now owns the message
    TRANSIENT = "transient"  # worth retrying: 4xx, connection faults before DATA, bad config
    PERMANENT = "permanent"  # 5xx: retrying cannot help
    UNKNOWN = "unknown"  # lost during DATA: the server may or may not have accepted it
    # Recorded by the worker when it is stopped mid-attempt; never returned by a transport.
    INTERRUPTED = "interrupted"
    # A provider's limit (rate, daily quota, every provider unhealthy) kept the email from
    # going now: no attempt was made; it waits until ``retry_after``. Never recorded.
    PACED = "paced"


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]
    message: bytes


@dataclass(frozen=True)
class RecipientRefusal:
    recipient: str
    code: int
    enhanced_code: str | None
    message: str


@dataclass(frozen=True)
class SendResult:
    """What one delivery attempt came to. Transports report faults here; they do not raise."""

    outcome: Outcome
    code: int | None
    message: str
    enhanced_code: str | None = None
    stage: Stage | None = None
    # Recipients the server refused while it accepted others (outcome ACCEPTED),
    # or every refusal when it accepted none.
    refused: tuple[RecipientRefusal, ...] = field(default_factory=tuple)
    # Seconds the server asked us to wait before trying again, when it said so.
    retry_after: float | None = None
    # The fault lies in Mailroom's SMTP settings (credentials, TLS), not in the email.
    config_error: bool = False
    # Seconds spent talking to the server, when the transport measured it (time spent
    # waiting for a free pooled connection is not part of the attempt).
    elapsed: float | None = None
    # The provider (SMTP_PROVIDERS name, or SMTP_HOST) that gave this answer.
    provider: str | None = None
    # The provider failed, not the email, and another one is healthy: the next attempt
    # should come at once (on that other provider), not after a backoff.
    retry_now: bool = False


class MailTransport(Protocol):
    async def send(self, envelope: Envelope) -> SendResult: ...

    async def aclose(self) -> None: ...
