"""The dashboard's session: a signed cookie holding its own id, a key's id, its expiry and a
CSRF token.

Nothing secret is in it (the key itself never is): its signature stops forgery, and the
key's id is looked up on every request, so a revoked key ends every session it opened.
It is signed with DASHBOARD_SECRET, or else with a random secret kept in the database
(``signing_secret``), the same for every API process and across restarts. "Sign out" records
the session's id as ended (``auth.signouts``), so a copy of the cookie stops working too.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.service import signing_secret
from mailroom.settings import Settings

COOKIE = "mailroom_dashboard"
_SALT = "mailroom.dashboard.session"
PURPOSE = "dashboard"


@dataclass(frozen=True)
class DashboardSession:
    id: str  # random; what "Sign out" records as ended
    key_id: uuid.UUID
    csrf: str
    expires_at: float  # Unix seconds
    tz: str  # the browser's time zone when it signed in (IANA name)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


class SessionSigner:
    def __init__(self, settings: Settings, secret: str | None = None) -> None:
        configured = settings.dashboard_secret
        if configured is not None:
            secret = configured.get_secret_value()
        self._serializer = URLSafeTimedSerializer(secret or secrets.token_urlsafe(32), salt=_SALT)
        self.lifetime = settings.dashboard_session_hours * 3600

    def new(self, key_id: uuid.UUID, tz: str) -> tuple[DashboardSession, str]:
        """A session for this key, and its cookie value."""
        session = DashboardSession(
            id=secrets.token_urlsafe(18),
            key_id=key_id,
            csrf=secrets.token_urlsafe(24),
            expires_at=time.time() + self.lifetime,
            tz=tz,
        )
        payload = {
            "i": session.id,
            "k": str(key_id),
            "c": session.csrf,
            "e": session.expires_at,
            "z": tz,
        }
        return session, self._serializer.dumps(payload)

    def read(self, cookie: str | None) -> DashboardSession | None:
        """The session in this cookie if it is genuine and not expired, else None."""
        if not cookie or len(cookie) > 1024:
            return None
        try:
            payload = self._serializer.loads(cookie, max_age=self.lifetime)
            session = DashboardSession(
                id=str(payload["i"]),
                key_id=uuid.UUID(payload["k"]),
                csrf=str(payload["c"]),
                expires_at=float(payload["e"]),
                tz=str(payload["z"]),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > time.time() else None


class Signers:
    """The process's SessionSigner, made on first use (reading the database's secret
    unless DASHBOARD_SECRET is set)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._signer: SessionSigner | None = None
        self._lock = asyncio.Lock()

    async def get(self, sessions: async_sessionmaker[AsyncSession]) -> SessionSigner:
        if self._signer is not None:
            return self._signer
        async with self._lock:
            if self._signer is None:
                secret = None
                if self._settings.dashboard_secret is None:
                    async with sessions() as session:
                        secret = await signing_secret(session, PURPOSE)
                        await session.commit()
                self._signer = SessionSigner(self._settings, secret)
        return self._signer
