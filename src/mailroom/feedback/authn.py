"""Who may post feedback: a shared token (Postmark, Brevo, which do not sign their
webhooks) or Mailgun's HMAC signature. SNS messages carry their own signature (see ses).

Unset secret: the endpoint is off (404), so an unconfigured provider cannot be fed events.
Wrong or missing secret: 401. Comparisons take constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from mailroom.errors import NotFound, Unauthorized


def configured(secret: SecretStr | None, provider: str) -> SecretStr:
    if secret is None:
        raise NotFound(f"Feedback from {provider} is not configured on this server.")
    return secret


def check_token(
    secret: SecretStr, *, query_token: str | None, authorization: str | None, provider: str
) -> None:
    """The token as ``?token=`` in the webhook URL, or as the Basic-auth password."""
    given = query_token if query_token is not None else _basic_password(authorization)
    if given is None:
        raise Unauthorized(
            f"Missing token: add ?token=<FEEDBACK_{provider.upper()}_TOKEN> to the webhook URL "
            "or use it as the Basic-auth password."
        )
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        raise Unauthorized("Wrong token.")


def _basic_password(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def check_mailgun_signature(secret: SecretStr, payload: Any) -> None:
    """HMAC-SHA256 of timestamp + token under the webhook signing key, hex-encoded."""
    signature = payload.get("signature") if isinstance(payload, Mapping) else None
    if not isinstance(signature, Mapping):
        raise Unauthorized("Missing Mailgun 'signature' object.")
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)):
        raise Unauthorized("Incomplete Mailgun signature.")
    expected = hmac.new(
        secret.get_secret_value().encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Unauthorized("Bad Mailgun signature.")
