"""SMTP AUTH (RFC 4954) with PLAIN, LOGIN or XOAUTH2, whichever the settings allow.

With ``SMTP_AUTH_MECHANISM=auto`` the mechanisms Mailroom has credentials for are tried
in the order XOAUTH2, PLAIN, LOGIN, among those the server offers; a 504 (mechanism
unavailable) or 535 (credentials refused) to one moves on to the next. Office 365, for
one, still lists LOGIN where basic authentication is switched off. A 535 to an XOAUTH2
token first drops the token and tries once more with a fresh one (it may have expired
between the fetch and its use).
"""

from __future__ import annotations

import base64

from mailroom.transport.base import Outcome, SendResult, Stage
from mailroom.transport.oauth2 import TokenError
from mailroom.transport.replies import reply_result, unexpected_reply
from mailroom.transport.smtp_config import SmtpConfig
from mailroom.transport.smtp_wire import Reply, SmtpConnection

_AUTHENTICATED = 235
_CONTINUE = 334
# "Unrecognized authentication type" and "credentials invalid": another mechanism may do.
_TRY_NEXT = frozenset({504, 535})
_PREFERENCE = ("XOAUTH2", "PLAIN", "LOGIN")


def connect_fault(message: str, *, config_error: bool = False) -> SendResult:
    """The connection could not be made ready: transient, at CONNECT."""
    return SendResult(
        outcome=Outcome.TRANSIENT,
        code=None,
        message=message,
        stage=Stage.CONNECT,
        config_error=config_error,
    )


class Authenticator:
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        configured: list[str] = []
        if config.auth_mechanism != "auto":
            configured.append(config.auth_mechanism.upper())
        else:
            if config.oauth2 is not None:
                configured.append("XOAUTH2")
            if config.password is not None:
                configured += ["PLAIN", "LOGIN"]
        self._configured = [m for m in _PREFERENCE if m in configured]

    async def authenticate(self, connection: SmtpConnection) -> SendResult | None:
        """Log in with the first mechanism that works; None, or why none did."""
        offered = connection.extensions.get("AUTH", "").upper().split()
        candidates = [m for m in self._configured if m in offered]
        if not candidates:
            return connect_fault(
                f"the server offers no AUTH mechanism Mailroom is set to use "
                f"({', '.join(self._configured)}); offered: {' '.join(offered) or 'none'}",
                config_error=True,
            )
        failed: SendResult | None = None
        for mechanism in candidates:
            try:
                code, text = await self._attempt(connection, mechanism)
            except TokenError as exc:
                return connect_fault(f"XOAUTH2: {exc}", config_error=exc.config_error)
            if code == _AUTHENTICATED:
                return None
            if 200 <= code < 400:
                # 250 is not "authenticated", and a further 334 was not asked for.
                return unexpected_reply(
                    code,
                    text,
                    Stage.CONNECT,
                    command=f"AUTH {mechanism}",
                    expected="235",
                    config_error=True,
                )
            failed = reply_result(code, text, Stage.CONNECT, config_error=code >= 500)
            if code not in _TRY_NEXT:
                break
        assert failed is not None
        return failed

    async def _attempt(self, connection: SmtpConnection, mechanism: str) -> Reply:
        config = self._config
        user = (config.username or "").encode()
        if mechanism == "XOAUTH2":
            return await self._xoauth2(connection, user)
        secret = (config.password or "").encode()
        if mechanism == "PLAIN":
            token = base64.b64encode(b"\0" + user + b"\0" + secret)
            return await _exchange(connection, b"AUTH PLAIN " + token)
        code, text = await _exchange(connection, b"AUTH LOGIN")
        for answer in (user, secret):
            if code != _CONTINUE:
                break
            code, text = await _exchange(connection, base64.b64encode(answer))
        return code, text

    async def _xoauth2(self, connection: SmtpConnection, user: bytes) -> Reply:
        tokens = self._config.oauth2
        assert tokens is not None
        code, text = 0, ""
        for _ in range(2):  # once more with a fresh token after a 535
            token = await tokens.token()
            blob = b"user=" + user + b"\x01auth=Bearer " + token.encode() + b"\x01\x01"
            code, text = await _exchange(connection, b"AUTH XOAUTH2 " + base64.b64encode(blob))
            if code == _CONTINUE:
                # The error comes as a base64 JSON challenge; an empty line gets the
                # final reply (RFC 7628 §3.2.3, as Gmail and Office 365 do it).
                code, text = await _exchange(connection, b"")
            if code != 535:
                break
            tokens.invalidate(token)
        return code, text


async def _exchange(connection: SmtpConnection, line: bytes) -> Reply:
    connection.write(line + b"\r\n")
    return await connection.reply()
