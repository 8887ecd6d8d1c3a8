"""The feedback use cases: a provider's webhook request, a report received by mail, and
the list of reports that matched no email."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.emails import feedback, feedback_repository
from mailroom.emails.feedback import FeedbackEvent
from mailroom.errors import InvalidRequest, MalformedRequest, NotFound, Unauthorized
from mailroom.feedback import authn, providers, ses
from mailroom.feedback.intake import FeedbackIntake
from mailroom.feedback.schemas import FeedbackReceived, UnmatchedItem, UnmatchedPage
from mailroom.settings import Settings

log = structlog.get_logger(__name__)

PROVIDERS = ("postmark", "brevo", "mailgun", "ses")
_PARSERS: dict[str, Callable[[Any], list[FeedbackEvent]]] = {
    "postmark": providers.postmark,
    "brevo": providers.brevo,
    "mailgun": providers.mailgun,
}


async def receive_webhook(
    intake: FeedbackIntake,
    settings: Settings,
    provider: str,
    body: bytes,
    *,
    query_token: str | None,
    authorization: str | None,
    sns: ses.SnsVerifier,
    now: datetime | None = None,
) -> FeedbackReceived:
    """Authenticate, parse and record one webhook request.

    An event naming no known email is kept as unmatched and answered 200: providers retry
    any other answer for hours or days, and a retry cannot make it match.
    """
    now = now or datetime.now(UTC)
    if provider not in PROVIDERS:
        raise NotFound(f"No feedback provider {provider[:40]!r}; known: {', '.join(PROVIDERS)}")
    if provider in ("postmark", "brevo"):
        secret = authn.configured(
            settings.feedback_postmark_token
            if provider == "postmark"
            else settings.feedback_brevo_token,
            provider,
        )
        authn.check_token(
            secret, query_token=query_token, authorization=authorization, provider=provider
        )
    elif provider == "mailgun":
        secret = authn.configured(settings.feedback_mailgun_signing_key, provider)
    else:
        topics = {t.strip() for t in settings.feedback_ses_topic_arns.split(",") if t.strip()}
        if not topics:
            raise NotFound("Feedback from ses is not configured on this server.")
    payload = _json(body)
    if provider == "mailgun":
        authn.check_mailgun_signature(secret, payload)
    try:
        if provider == "ses":
            events = await _sns(payload, sns, now, topics)
        else:
            events = _PARSERS[provider](payload)
    except providers.PayloadError as exc:
        raise InvalidRequest(f"Not a {provider} event: {exc}.") from None
    recorded = await intake.record(events)
    log.info(
        "feedback.received",
        provider=provider,
        events=len(events),
        matched=recorded.matched,
        unmatched=recorded.unmatched,
        duplicates=recorded.duplicates,
    )
    return FeedbackReceived(
        received=len(events),
        matched=recorded.matched,
        unmatched=recorded.unmatched,
        duplicates=recorded.duplicates,
        emails=sorted(recorded.emails),
    )


async def _sns(
    payload: Any, sns: ses.SnsVerifier, now: datetime, topics: set[str]
) -> list[FeedbackEvent]:
    if not isinstance(payload, dict):
        raise providers.PayloadError("an SNS message is a JSON object")
    # Any AWS account can sign SNS messages: only the configured topics are believed.
    if payload.get("TopicArn") not in topics:
        raise Unauthorized("This SNS topic is not in FEEDBACK_SES_TOPIC_ARNS.")
    await sns.verify(payload, now)
    if payload.get("Type") == "SubscriptionConfirmation":
        await sns.confirm(payload)
        return []
    if payload.get("Type") != "Notification":
        return []  # UnsubscribeConfirmation: nothing to do
    return ses.parse_notification(payload)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedRequest("The body is not JSON.") from None


async def receive_report(
    session: AsyncSession, settings: Settings, events: list[FeedbackEvent]
) -> feedback.Recorded:
    """Reports received by mail (`mailroom bounces`), already parsed."""
    return await feedback.record(session, settings, events, datetime.now(UTC))


def _cursor(received_at: datetime, row_id: int) -> str:
    raw = json.dumps({"t": received_at.isoformat(), "i": row_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when, row_id = datetime.fromisoformat(payload["t"]), payload["i"]
    except (ValueError, binascii.Error, KeyError, TypeError, RecursionError):
        when, row_id = None, None
    if when is None or type(row_id) is not int or when.tzinfo is None:
        raise InvalidRequest(
            "Invalid request. cursor: pass back a nextCursor unchanged",
            details=[{"field": "cursor", "message": "is not a cursor this service produced"}],
        )
    return when, row_id


async def list_unmatched(
    session: AsyncSession, *, limit: int, cursor: str | None = None
) -> UnmatchedPage:
    rows = await feedback_repository.unmatched(session, limit=limit + 1, after=_after(cursor))
    page = rows[:limit]
    last = page[-1] if page else None
    return UnmatchedPage(
        data=[
            UnmatchedItem(
                id=r.id,
                provider=r.provider,
                kind=r.kind,
                recipient=r.recipient,
                message_id=r.message_id,
                reason=r.parse_error,
                received_at=r.received_at,
                raw=r.raw,
            )
            for r in page
        ],
        has_more=len(rows) > limit,
        next_cursor=_cursor(last.received_at, last.id) if len(rows) > limit and last else None,
    )
