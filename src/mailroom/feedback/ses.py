"""Amazon SES notifications delivered by SNS.

Every SNS message's signature is checked against the certificate named in it, which is
fetched (once per process per URL) only from ``https://sns.<region>.amazonaws.com/…pem``:
a message naming any other certificate is refused before anything is fetched. A message
older than an hour is refused as a replay. A SubscriptionConfirmation is confirmed by
fetching its SubscribeURL, which must point at the same SNS host pattern.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailroom.emails.feedback import FeedbackEvent, normalize_message_id
from mailroom.errors import InvalidRequest, Unauthorized
from mailroom.feedback.providers import PayloadError

log = structlog.get_logger(__name__)

CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[A-Za-z0-9._-]+\.pem$")
SUBSCRIBE_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?")
MAX_AGE = timedelta(hours=1)
_SIGNED_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SIGNED_SUBSCRIPTION = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


class SnsVerifier:
    """Checks SNS signatures; ``client`` fetches certificates and confirms subscriptions."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._certificates: dict[str, rsa.RSAPublicKey] = {}

    async def verify(self, message: Mapping[str, Any], now: datetime) -> None:
        kind = message.get("Type")
        fields = _SIGNED_NOTIFICATION if kind == "Notification" else _SIGNED_SUBSCRIPTION
        if kind not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
            raise InvalidRequest(f"Not an SNS message type Mailroom takes: {str(kind)[:40]!r}")
        url = message.get("SigningCertURL") or message.get("SigningCertUrl")
        if not isinstance(url, str) or not CERT_URL.fullmatch(url):
            raise Unauthorized("SigningCertURL is not an Amazon SNS certificate URL.")
        stamp = _timestamp(message.get("Timestamp"))
        if now - stamp > MAX_AGE:
            raise InvalidRequest("This SNS message is more than an hour old: refused as a replay.")
        version = str(message.get("SignatureVersion", ""))
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303  (SNS SignatureVersion 1 is SHA1withRSA)
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise Unauthorized(f"Unknown SNS SignatureVersion {version[:8]!r}.")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise Unauthorized("The SNS signature is not base64.") from None
        text = "".join(
            f"{name}\n{message[name]}\n"
            for name in fields
            if name in message and isinstance(message[name], str)
        )
        key = await self._certificate(url)
        try:
            key.verify(signature, text.encode(), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise Unauthorized("Bad SNS signature.") from None

    async def _certificate(self, url: str) -> rsa.RSAPublicKey:
        key = self._certificates.get(url)
        if key is not None:
            return key
        try:
            response = await self._client.get(url, timeout=10)
            response.raise_for_status()
            certificate = x509.load_pem_x509_certificate(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("feedback.sns_certificate_failed", error=type(exc).__name__)
            raise Unauthorized("The SNS signing certificate could not be fetched.") from None
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise Unauthorized("The SNS signing certificate is not an RSA certificate.")
        self._certificates[url] = public
        return public

    async def confirm(self, message: Mapping[str, Any]) -> None:
        url = message.get("SubscribeURL")
        if not isinstance(url, str) or not SUBSCRIBE_URL.match(url):
            raise InvalidRequest("SubscribeURL is not an Amazon SNS URL.")
        try:
            response = await self._client.get(url, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("feedback.sns_confirm_failed", error=type(exc).__name__)
            raise InvalidRequest(
                "Confirming the SNS subscription failed; SNS will send the confirmation again."
            ) from None
        log.info("feedback.sns_subscribed", topic=str(message.get("TopicArn"))[:200])


def _timestamp(value: Any) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest("The SNS Timestamp is not a time.") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def parse_notification(message: Mapping[str, Any]) -> list[FeedbackEvent]:
    """The SES event inside an SNS Notification (its Message, itself JSON)."""
    try:
        ses = json.loads(str(message.get("Message", "")))
    except ValueError:
        raise PayloadError("the SNS Message is not SES's JSON") from None
    if not isinstance(ses, Mapping):
        raise PayloadError("the SNS Message is not SES's JSON object")
    mail = ses.get("mail") if isinstance(ses.get("mail"), Mapping) else {}
    assert isinstance(mail, Mapping)
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), Mapping) else {}
    assert isinstance(headers, Mapping)
    message_id = normalize_message_id(str(headers.get("messageId") or "")) or _header(
        mail, "Message-ID"
    )
    kind = ses.get("notificationType") or ses.get("eventType")
    common: dict[str, Any] = {"provider": "ses", "message_id": message_id}
    sns_id = str(message.get("MessageId", ""))
    if kind == "Bounce":
        bounce = _section(ses, "bounce")
        hard = bounce.get("bounceType") == "Permanent"
        feedback_id = str(bounce.get("feedbackId") or sns_id)
        return [
            FeedbackEvent(
                kind="bounced",
                recipient=str(r.get("emailAddress", "")) or None,
                bounce_type="hard" if hard else "soft",
                diagnostic_code=_opt(r.get("diagnosticCode")),
                status_code=_opt(r.get("status")),
                provider_event_id=f"{feedback_id}:{r.get('emailAddress')}",
                occurred_at=_time(bounce.get("timestamp")),
                **common,
            )
            for r in _recipients(bounce, "bouncedRecipients")
        ]
    if kind == "Complaint":
        complaint = _section(ses, "complaint")
        feedback_id = str(complaint.get("feedbackId") or sns_id)
        return [
            FeedbackEvent(
                kind="complained",
                recipient=str(r.get("emailAddress", "")) or None,
                diagnostic_code=_opt(complaint.get("complaintFeedbackType")),
                provider_event_id=f"{feedback_id}:{r.get('emailAddress')}",
                occurred_at=_time(complaint.get("timestamp")),
                **common,
            )
            for r in _recipients(complaint, "complainedRecipients")
        ]
    if kind == "Delivery":
        delivery = _section(ses, "delivery")
        recipients = delivery.get("recipients")
        if not isinstance(recipients, list):
            raise PayloadError("'delivery.recipients' must be a list")
        return [
            FeedbackEvent(
                kind="delivered",
                recipient=str(r),
                diagnostic_code=_opt(delivery.get("smtpResponse")),
                provider_event_id=f"{sns_id}:{r}",
                occurred_at=_time(delivery.get("timestamp")),
                **common,
            )
            for r in recipients
        ]
    return []


def _section(ses: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = ses.get(name)
    if not isinstance(section, Mapping):
        raise PayloadError(f"missing {name!r}")
    return section


def _recipients(section: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = section.get(key)
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise PayloadError(f"{key!r} must be a list of objects")
    return items


def _header(mail: Mapping[str, Any], name: str) -> str | None:
    headers = mail.get("headers")
    if isinstance(headers, list):
        for h in headers:
            if isinstance(h, Mapping) and str(h.get("name", "")).lower() == name.lower():
                return normalize_message_id(str(h.get("value", "")))
    return None


def _opt(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _time(value: Any) -> datetime | None:
    try:
        return _timestamp(value) if value else None
    except InvalidRequest:
        return None
