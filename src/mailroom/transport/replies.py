"""How SMTP replies are read: reply classes (RFC 5321), enhanced codes (RFC 3463), retry hints."""

from __future__ import annotations

import re

from mailroom.transport.base import Outcome, RecipientRefusal, SendResult, Stage

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_RETRY_HINT = re.compile(
    r"(?:try\s+(?:again\s+)?(?:later\s+)?in|retry\s+in|after|wait)\s+(\d{1,6})\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
# 530 authentication required, 534 mechanism too weak, 535 credentials invalid,
# 538 encryption required: the server is fine and so is the email; our settings are not.
_CONFIG_CODES = frozenset({530, 534, 535, 538})


def split_enhanced(message: str) -> tuple[str | None, str]:
    """Separate a leading enhanced status code (``5.1.1``) from the reply text."""
    match = _ENHANCED.match(message)
    if match is None:
        return None, message.strip()
    return match.group(1), message[match.end() :].strip()


def retry_after_hint(message: str) -> float | None:
    """Seconds the server asked us to wait ("try again in 60 seconds"), if it said so."""
    match = _RETRY_HINT.search(message)
    if match is None:
        return None
    return float(int(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()])


def is_config_error(code: int) -> bool:
    return code in _CONFIG_CODES


def classify(code: int, stage: Stage) -> Outcome:
    """What a reply that ends an attempt short of delivery means; never ``accepted``.

    Only a 2xx to the final dot of the message's own DATA accepts it (``accepted``). A
    2xx where another reply was due (a 250 greeting, a 250 to STARTTLS, AUTH or DATA)
    is a server not following the protocol: nothing was handed over, so try again.
    """
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    if stage is Stage.CONNECT or is_config_error(code):
        # A refusal before MAIL FROM is about the connection or our credentials,
        # never about this email: retry (and log it loudly) instead of failing mail.
        return Outcome.TRANSIENT
    if code == 552 and stage is Stage.RCPT:
        # "Too many recipients" at RCPT must be treated as temporary (RFC 5321 §4.5.3.1.10).
        return Outcome.TRANSIENT
    if 500 <= code < 600:
        return Outcome.PERMANENT
    # 1xx/2xx/3xx where something else was due: the server is confused; try again later.
    return Outcome.TRANSIENT


def refusal(recipient: str, code: int, message: str) -> RecipientRefusal:
    enhanced, text = split_enhanced(message)
    return RecipientRefusal(recipient=recipient, code=code, enhanced_code=enhanced, message=text)


def classify_refusals(refusals: tuple[RecipientRefusal, ...]) -> Outcome:
    """When every recipient was refused: transient if any refusal may clear up."""
    if any(classify(r.code, Stage.RCPT) is Outcome.TRANSIENT for r in refusals):
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def reply_result(
    code: int, message: str, stage: Stage, *, config_error: bool | None = None
) -> SendResult:
    """What a server reply at ``stage`` that ends the attempt means (never ``accepted``).

    ``config_error`` defaults to the codes that always mean our settings (530, 534, 535,
    538); the connection set-up says so itself for other AUTH and TLS failures.
    """
    enhanced, text = split_enhanced(message)
    return SendResult(
        outcome=classify(code, stage),
        code=code,
        enhanced_code=enhanced,
        message=text,
        stage=stage,
        retry_after=retry_after_hint(text),
        config_error=is_config_error(code) if config_error is None else config_error,
    )


def unexpected_reply(
    code: int,
    message: str,
    stage: Stage,
    *,
    command: str,
    expected: str,
    config_error: bool = False,
) -> SendResult:
    """A reply the protocol does not allow at this point (a 250 where 354 was due)."""
    enhanced, text = split_enhanced(message)
    return SendResult(
        outcome=classify(code, stage),
        code=code,
        enhanced_code=enhanced,
        message=f"the server answered {command} with {code} where {expected} was due: {text}",
        stage=stage,
        config_error=config_error,
    )


def accepted(code: int, message: str, refused: tuple[RecipientRefusal, ...] = ()) -> SendResult:
    """A 2xx to the final dot: the server now owns the message."""
    enhanced, text = split_enhanced(message)
    return SendResult(
        outcome=Outcome.ACCEPTED,
        code=code,
        enhanced_code=enhanced,
        message=text,
        stage=Stage.DATA,
        refused=refused,
    )
