"""Creating, listing, revoking and checking API keys."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.keys import display_prefix, generate_key, hash_key, looks_like_key
from mailroom.auth.models import ApiKey
from mailroom.auth.scopes import Scope
from mailroom.errors import InvalidRequest, NotFound
from mailroom.settings import validate_rate_limit


@dataclass(frozen=True)
class Principal:
    """The caller, as far as a request needs to know it."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]
    rate_limit: str | None
    sandbox: bool = False  # its emails are logged but never reach an SMTP server

    def has(self, scope: Scope) -> bool:
        return scope.value in self.scopes


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: Sequence[Scope],
    rate_limit: str | None = None,
    sandbox: bool = False,
) -> tuple[ApiKey, str]:
    """A new key; returns the row and the key itself (the only time it exists in clear)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("A key name must be 1 to 100 characters.")
    if rate_limit is not None:
        try:
            validate_rate_limit(rate_limit)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    existing = await session.execute(
        select(ApiKey.id).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    )
    if existing.first() is not None:
        raise InvalidRequest(
            f"An active key named {name!r} exists; revoke it or pick another name."
        )
    key = generate_key()
    row = ApiKey(
        id=uuid.uuid4(),
        name=name,
        prefix=display_prefix(key),
        key_hash=hash_key(key),
        scopes=[s.value for s in scopes],
        rate_limit=rate_limit,
        sandbox=sandbox,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row, ["created_at"])
    return row, key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    result = await session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name))
    return list(result.scalars())


async def revoke_key(session: AsyncSession, name_or_id: str) -> ApiKey:
    """Revoke the active key with this name, or the key with this id."""
    try:
        condition = ApiKey.id == uuid.UUID(name_or_id)
    except ValueError:
        condition = ApiKey.name == name_or_id
    result = await session.execute(
        update(ApiKey)
        .where(condition, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiKey)
    )
    row = result.scalars().first()
    if row is None:
        raise NotFound(f"No active key named or with id {name_or_id!r}")
    return row


class KeyChecker:
    """Resolves a presented key to a Principal, with a short per-process cache.

    The cache keeps a database round trip off every request; its lifetime bounds how
    long a revoked key keeps working in a running process (API_KEY_CACHE_SECONDS).
    """

    _TOUCH_EVERY = 60.0  # seconds between last_used_at updates for one key

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ttl: float) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}

    async def check(self, presented: str) -> Principal | None:
        if not looks_like_key(presented):
            return None
        digest = hash_key(presented)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            principal: Principal | None = cached[0]
        else:
            principal = await self._load_once(digest)
            if principal is None:
                self._cache.pop(digest, None)
                return None
            if self._ttl > 0:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (principal, now + self._ttl)
        assert principal is not None
        if now - self._touched.get(principal.key_id, -self._TOUCH_EVERY) >= self._TOUCH_EVERY:
            self._touched[principal.key_id] = now
            await self._touch(principal.key_id)
        return principal

    async def _load_once(self, digest: str) -> Principal | None:
        """Load a key once for every request that finds it missing or expired meanwhile.

        When the cached entry of a busy key expires, every request in flight finds it
        expired at once; each loading it for itself took a pooled connection apiece, and
        the requests storing emails waited behind them (the ingest benchmark's p99).
        """
        loading = self._loading.get(digest)
        if loading is None:
            loading = asyncio.ensure_future(self._load(digest))
            self._loading[digest] = loading
            loading.add_done_callback(lambda done: self._loaded(digest, done))
        # Shielded: a request that goes away does not cancel the others' load.
        return await asyncio.shield(loading)

    def _loaded(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        if self._loading.get(digest) is done:
            del self._loading[digest]
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every waiter went away

    async def _load(self, digest: str) -> Principal | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
                )
            ).scalar_one_or_none()
        if row is None:
            return None
        return Principal(
            key_id=row.id,
            name=row.name,
            scopes=frozenset(row.scopes),
            rate_limit=row.rate_limit,
            sandbox=row.sandbox,
        )

    async def _touch(self, key_id: uuid.UUID) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=func.now())
            )
            await session.commit()


DEV_KEY_NAME = "dev"


async def ensure_dev_key(
    sessions: async_sessionmaker[AsyncSession], saved: str | None
) -> tuple[str, bool]:
    """The development key: ``saved`` while it still works, else a new one named "dev".

    Returns the key and whether it was created now. Only `mailroom dev` uses this.
    """
    if saved and await KeyChecker(sessions, ttl=0).check(saved) is not None:
        return saved, False
    async with sessions() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.name == DEV_KEY_NAME, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        _, key = await create_key(session, name=DEV_KEY_NAME, scopes=list(Scope))
        await session.commit()
    return key, True
