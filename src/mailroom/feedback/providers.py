"""Postmark, Brevo and Mailgun webhook payloads, as their documentation describes them,
turned into feedback events. Anything not understood raises ``PayloadError``.

Events a provider sends that say nothing about delivery (opens, clicks, Brevo's
``request``) are ignored rather than kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mailroom.emails.feedback import FeedbackEvent, normalize_message_id

# The Postmark metadata key the worker sets (as X-PM-Metadata-mailroom-email-id) when
# FEEDBACK_POSTMARK_TOKEN is configured: Postmark's webhooks carry metadata, not headers.
POSTMARK_EMAIL_ID_KEY = "mailroom-email-id"


class PayloadError(ValueError):
    """The body is JSON but not the provider's event shape."""


def _str(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise PayloadError(f"missing {key!r}")
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise PayloadError(f"{key!r} must be a string")
    return str(value)


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"{what} must be a JSON object")
    return value


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


# -- Postmark: Bounce, SpamComplaint, Delivery ------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "DMARCPolicy", "Unknown"}


def postmark(payload: Any) -> list[FeedbackEvent]:
    data = _object(payload, "the body")
    record_type = _str(data, "RecordType", required=True)
    metadata = data.get("Metadata") if isinstance(data.get("Metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    common: dict[str, Any] = {
        "provider": "postmark",
        "email_id": _uuid(metadata.get(POSTMARK_EMAIL_ID_KEY)),
        # Postmark's own id: kept (it is what Postmark's UI shows), matched only as a
        # Message-ID when the message was sent with it as one.
        "message_id": _str(data, "MessageID"),
    }
    if record_type == "Delivery":
        recipient = _str(data, "Recipient", required=True)
        return [
            FeedbackEvent(
                kind="delivered",
                recipient=recipient,
                diagnostic_code=_str(data, "Details"),
                provider_event_id=f"delivery:{common['message_id']}:{recipient}",
                occurred_at=_when(_str(data, "DeliveredAt")),
                **common,
            )
        ]
    if record_type not in ("Bounce", "SpamComplaint"):
        return []
    kind_name = _str(data, "Type", required=True)
    event_id = f"{record_type}:{_str(data, 'ID', required=True)}"
    recipient = _str(data, "Email", required=True)
    when = _when(_str(data, "BouncedAt"))
    details = _str(data, "Details") or _str(data, "Description")
    if record_type == "SpamComplaint" or kind_name == "SpamComplaint":
        kind = "complained"
        bounce_type = None
    elif kind_name == "Unsubscribe":
        kind, bounce_type = "unsubscribed", None
    elif kind_name in _POSTMARK_HARD:
        kind, bounce_type = "bounced", "hard"
    elif kind_name in _POSTMARK_SOFT:
        kind, bounce_type = "bounced", "soft"
    else:
        return []  # auto-responders, subscriptions, challenge mails: not an outcome
    return [
        FeedbackEvent(
            kind=kind,  # type: ignore[arg-type]
            recipient=recipient,
            bounce_type=bounce_type,  # type: ignore[arg-type]
            diagnostic_code=details,
            provider_event_id=event_id,
            occurred_at=when,
            **common,
        )
    ]


# -- Brevo: transactional webhook events ------------------------------------------------

_BREVO = {
    "hard_bounce": ("bounced", "hard"),
    "invalid_email": ("bounced", "hard"),
    "soft_bounce": ("bounced", "soft"),
    "blocked": ("bounced", "soft"),
    "spam": ("complained", None),
    "complaint": ("complained", None),
    "unsubscribed": ("unsubscribed", None),
    "delivered": ("delivered", None),
}


def brevo(payload: Any) -> list[FeedbackEvent]:
    """One event, or a list of them (Brevo batches when the webhook is set to)."""
    items = payload if isinstance(payload, list) else [payload]
    events: list[FeedbackEvent] = []
    for item in items:
        data = _object(item, "an event")
        name = _str(data, "event", required=True)
        assert name is not None
        if name not in _BREVO:
            continue  # opens, clicks, requests, deferrals
        kind, bounce_type = _BREVO[name]
        recipient = _str(data, "email", required=True)
        message_id = _str(data, "message-id")
        stamp = _str(data, "ts_event") or _str(data, "ts") or _str(data, "date")
        events.append(
            FeedbackEvent(
                provider="brevo",
                kind=kind,  # type: ignore[arg-type]
                recipient=recipient,
                bounce_type=bounce_type,  # type: ignore[arg-type]
                diagnostic_code=_str(data, "reason"),
                provider_event_id=f"{name}:{message_id}:{recipient}:{stamp}",
                message_id=message_id,
                occurred_at=_epoch(_str(data, "ts_event")) or _when(_str(data, "date")),
            )
        )
    return events


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC) if value else None
    except (ValueError, OverflowError, OSError):
        return None


# -- Mailgun: delivered, failed, complained, unsubscribed --------------------------------


def mailgun(payload: Any) -> list[FeedbackEvent]:
    data = _object(_object(payload, "the body").get("event-data"), "'event-data'")
    name = _str(data, "event", required=True)
    recipient = _str(data, "recipient", required=True)
    message = data.get("message") if isinstance(data.get("message"), Mapping) else {}
    assert isinstance(message, Mapping)
    headers = message.get("headers") if isinstance(message.get("headers"), Mapping) else {}
    assert isinstance(headers, Mapping)
    status = data.get("delivery-status")
    status = status if isinstance(status, Mapping) else {}
    common: dict[str, Any] = {
        "provider": "mailgun",
        "recipient": recipient,
        "provider_event_id": _str(data, "id", required=True),
        "message_id": normalize_message_id(_str(headers, "message-id")),
        "occurred_at": _epoch(_str(data, "timestamp")),
        "diagnostic_code": _str(status, "message") or _str(status, "description"),
        "status_code": _str(status, "enhanced-code"),
    }
    if name == "delivered":
        return [FeedbackEvent(kind="delivered", **common)]
    if name == "failed":
        hard = _str(data, "severity") == "permanent"
        return [FeedbackEvent(kind="bounced", bounce_type="hard" if hard else "soft", **common)]
    if name == "complained":
        return [FeedbackEvent(kind="complained", **common)]
    if name == "unsubscribed":
        return [FeedbackEvent(kind="unsubscribed", **common)]
    return []
