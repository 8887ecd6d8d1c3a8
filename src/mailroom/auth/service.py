"""Creating, listing, revoking and checking API keys."""

from __future__ import annotations

import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from async_lru import alru_cache
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.auth.keys import display_prefix, generate_key, hash_key, looks_like_key
from mailroom.auth.models import ApiKey, SigningSecret
from mailroom.auth.scopes import Scope
from mailroom.errors import InvalidRequest, NotFound
from mailroom.projects.access import ProjectAccess, ProjectRef
from mailroom.projects.models import Project
from mailroom.projects.names import DEFAULT_PROJECT_NAME
from mailroom.projects.service import find_project
from mailroom.setting_checks import validate_rate_limit


@dataclass(frozen=True)
class Principal:
    """The caller, as far as a request needs to know it.

    ``project`` is the key's project: where its emails go, and (see ``access``) the only
    one whose emails it reaches unless it holds the ``admin`` scope. Whatever attaches to
    a project (webhooks, suppressions) takes ``project.id`` from here.
    """

    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]
    rate_limit: str | None
    project: ProjectRef
    sandbox: bool = False  # its emails are logged but never reach an SMTP server

    def has(self, scope: Scope) -> bool:
        return scope.value in self.scopes

    @property
    def access(self) -> ProjectAccess:
        return ProjectAccess(own=self.project, every_project=self.has(Scope.ADMIN))


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: Sequence[Scope],
    rate_limit: str | None = None,
    sandbox: bool = False,
    project: str = DEFAULT_PROJECT_NAME,
) -> tuple[ApiKey, str]:
    """A new key of ``project`` (which must exist); returns the row and the key itself
    (the only time it exists in clear)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidRequest("A key name must be 1 to 100 characters.")
    if rate_limit is not None:
        try:
            validate_rate_limit(rate_limit)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    # Not created on the fly: a misspelt project would get a key that silently sees none
    # of the emails it was meant for.
    owner = await find_project(session, project)
    if owner is None:
        raise InvalidRequest(
            f"No project named {project[:80]!r}: create it first with "
            "`mailroom projects create NAME` (`mailroom projects list` shows them)."
        )
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
        project_id=owner.id,
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


async def list_keys(
    session: AsyncSession, *, project: str | None = None
) -> list[tuple[ApiKey, str]]:
    """Every key (or ``project``'s) with its project's name, oldest first."""
    stmt = (
        select(ApiKey, Project.name)
        .join(Project, Project.id == ApiKey.project_id)
        .order_by(ApiKey.created_at, ApiKey.name)
    )
    if project is not None:
        if await find_project(session, project) is None:
            raise NotFound(f"No project named {project[:80]!r}.")
        stmt = stmt.where(Project.name == project)
    return [(key, name) for key, name in await session.execute(stmt)]


async def active_keys_by_project(session: AsyncSession) -> dict[uuid.UUID, int]:
    """How many keys that are not revoked each project has (projects without any left out)."""
    stmt = (
        select(ApiKey.project_id, func.count())
        .where(ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.project_id)
    )
    return {project_id: int(count) for project_id, count in await session.execute(stmt)}


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
    It is async-lru's, which loads a key once for every request that finds it missing
    or expired meanwhile: when the entry of a busy key expires, every request in flight
    finds it expired at once, and each loading it for itself took a pooled connection
    apiece, which the requests storing emails then waited behind (the ingest
    benchmark's p99). Exceptions are not cached.

    An unknown key is remembered as unknown for as long (in a bounded set of its own, so
    that a stream of random keys evicts none of the known ones): a client retrying a
    revoked or mistyped key costs no database lookup per request. A key is never
    presented before it exists (it is generated at creation), and revocation only turns
    a known key into an unknown one, so this never keeps a key working longer.
    """

    _TOUCH_EVERY = 60.0  # seconds between last_used_at updates for one key
    _CACHED_KEYS = 10_000

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._touched: dict[uuid.UUID, float] = {}
        # ttl=0 keeps nothing once the load is done (only requests waiting on it share it).
        self._principals = alru_cache(maxsize=self._CACHED_KEYS, ttl=ttl)(self._load)
        self._by_id = alru_cache(maxsize=self._CACHED_KEYS, ttl=ttl)(self._load_id)
        self._ttl = ttl
        self._clock = clock
        self._unknown: OrderedDict[str, float] = OrderedDict()  # digest -> when to forget it

    async def check(self, presented: str) -> Principal | None:
        if not looks_like_key(presented):
            return None
        digest = hash_key(presented)
        forget_at = self._unknown.get(digest)
        if forget_at is not None:
            if self._clock() < forget_at:
                return None
            del self._unknown[digest]
        principal = await self._principals(digest)
        if principal is None:
            # Kept apart from the known keys (see the class docstring).
            self._principals.cache_invalidate(digest)
            if self._ttl > 0:
                self._unknown[digest] = self._clock() + self._ttl
                if len(self._unknown) > self._CACHED_KEYS:
                    self._unknown.popitem(last=False)
            return None
        now = time.monotonic()
        if now - self._touched.get(principal.key_id, -self._TOUCH_EVERY) >= self._TOUCH_EVERY:
            self._touched[principal.key_id] = now
            await self._touch(principal.key_id)
        return principal

    async def check_id(self, key_id: uuid.UUID) -> Principal | None:
        """The key with this id while it is not revoked (cached as ``check``): what a
        dashboard session, which holds a key's id rather than the key, re-checks."""
        principal = await self._by_id(key_id)
        if principal is None:
            self._by_id.cache_invalidate(key_id)
        return principal

    async def _load_id(self, key_id: uuid.UUID) -> Principal | None:
        return await self._find(ApiKey.id == key_id)

    async def _load(self, digest: str) -> Principal | None:
        return await self._find(ApiKey.key_hash == digest)

    async def _find(self, condition: Any) -> Principal | None:
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(ApiKey, Project.name)
                    .join(Project, Project.id == ApiKey.project_id)
                    .where(condition, ApiKey.revoked_at.is_(None))
                )
            ).one_or_none()
        if found is None:
            return None
        row, project_name = found
        return Principal(
            key_id=row.id,
            name=row.name,
            scopes=frozenset(row.scopes),
            rate_limit=row.rate_limit,
            project=ProjectRef(id=row.project_id, name=project_name),
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


async def signing_secret(session: AsyncSession, purpose: str) -> str:
    """The secret kept for ``purpose``, made now if there is none (the first process to ask
    makes it; the others read that one)."""
    await session.execute(
        insert(SigningSecret)
        .values(purpose=purpose, secret=secrets.token_urlsafe(48))
        .on_conflict_do_nothing(index_elements=[SigningSecret.purpose])
    )
    found = await session.execute(
        select(SigningSecret.secret).where(SigningSecret.purpose == purpose)
    )
    return str(found.scalar_one())
