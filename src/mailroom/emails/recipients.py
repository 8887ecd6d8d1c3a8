"""Per-recipient outcomes: when a server accepts some recipients and defers others.

An SMTP transaction accepted for some recipients must never be repeated to them, so
the deferred ones are retried on their own: the same message (same Message-ID), an
envelope holding only them, under the email's backoff and attempt limit. The email
stays ``retrying`` until they resolve, then is ``sent`` (a recipient was accepted; one
that never was is ``failed`` in its own state) or ``failed`` (none ever was).

Each state is ``{address, status, code, enhancedCode, message}`` with ``status`` one of
``sent``, ``deferred`` (to be retried), ``failed`` or ``pending`` (no answer yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailroom.transport.base import RecipientRefusal, SendResult

SENT, DEFERRED, FAILED, PENDING = "sent", "deferred", "failed", "pending"
MAX_STATE_MESSAGE = 500  # characters of a refusal's text kept per recipient

State = dict[str, Any]


def to_send(states: Sequence[State] | None, envelope: Sequence[str]) -> tuple[str, ...]:
    """The recipients this attempt addresses: the deferred ones once any were, else all
    not yet accepted (a manual retry of a failed email sends to every one again)."""
    if not states:
        return tuple(envelope)
    deferred = {s["address"].lower() for s in states if s["status"] == DEFERRED}
    if not deferred:
        deferred = {s["address"].lower() for s in states if s["status"] != SENT}
    return tuple(a for a in envelope if a.lower() in deferred)


def after_attempt(
    states: Sequence[State] | None,
    envelope: Sequence[str],
    addressed: Sequence[str],
    result: SendResult,
    *,
    accepted: bool,
) -> list[State] | None:
    """The states once ``result`` answered for ``addressed`` (None: still one shared fate).

    ``accepted``: the server took the message for the recipients it did not refuse.
    """
    if states is None and (not accepted or not result.refused):
        return None  # all accepted, or none: the email's status says it for every one
    refused = {r.recipient.lower(): r for r in result.refused}
    current = {s["address"].lower(): dict(s) for s in states or ()}
    merged: list[State] = []
    for address in envelope:
        key = address.lower()
        state = current.get(key) or _state(address, PENDING)
        if key in {a.lower() for a in addressed} and accepted:
            refusal = refused.get(key)
            if refusal is None:
                state = _state(address, SENT, result.code, result.enhanced_code, None)
            else:
                status = DEFERRED if _transient(refusal) else FAILED
                state = _state(
                    address, status, refusal.code, refusal.enhanced_code, refusal.message
                )
        merged.append(state)
    return merged


def settle(states: Sequence[State], *, give_up: bool) -> list[State]:
    """The deferred ones marked failed when no attempt is left (``give_up``)."""
    if not give_up:
        return list(states)
    return [{**s, "status": FAILED} if s["status"] == DEFERRED else dict(s) for s in states]


def any_with(states: Sequence[State] | None, status: str) -> bool:
    return bool(states) and any(s["status"] == status for s in states or ())


def view(states: Sequence[State] | None, envelope: Sequence[str], email_status: str) -> list[State]:
    """Every recipient's state for the API: stored ones, or the email's shared fate."""
    if states:
        return [dict(s) for s in states]
    shared = {"sent": SENT, "failed": FAILED}.get(email_status, PENDING)
    return [_state(address, shared) for address in envelope]


def _transient(refusal: RecipientRefusal) -> bool:
    # 552 at RCPT means "too many recipients" (RFC 5321 §4.5.3.1.10): try the rest later.
    return 400 <= refusal.code < 500 or refusal.code == 552


def _state(
    address: str,
    status: str,
    code: int | None = None,
    enhanced: str | None = None,
    message: str | None = None,
) -> State:
    return {
        "address": address,
        "status": status,
        "code": code,
        "enhancedCode": enhanced,
        "message": message[:MAX_STATE_MESSAGE] if message else None,
    }
