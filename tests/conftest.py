"""Shared fixtures. Each test process gets its own database and its own Redis key prefix.

Tests talk to real PostgreSQL and Redis (TEST_DATABASE_URL and TEST_REDIS_URL point
at the servers; when one does not answer, the session starts a throwaway embedded one,
see tests/support/embedded_fallback.py) and to an in-process aiosmtpd server; nothing
else is mocked. Under
pytest-xdist every worker process is a session of its own: its own database, Redis
prefix and session-scoped servers, so workers never see each other's rows or jobs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailroom.api.app import create_app
from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.db.engine import create_engine, create_session_factory
from mailroom.db.migrate import migrate
from mailroom.devinbox.store import Inbox
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings, load_settings
from mailroom.transport.smtp import SmtpConfig, SmtpTransport
from mailroom.worker.runner import DeliveryWorker
from tests.support.embedded_fallback import Fallback, start_fallback
from tests.support.loggers import forget_cached_loggers
from tests.support.smtp_server import SmtpTestServer
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_FALLBACK = pytest.StashKey[Fallback]()


def pytest_configure(config: pytest.Config) -> None:
    """Embedded servers for the session in place of test servers that do not answer."""
    global SERVER_URL, REDIS_URL
    fallback = start_fallback(SERVER_URL, REDIS_URL)
    config.stash[_FALLBACK] = fallback
    SERVER_URL, REDIS_URL = fallback.database_url, fallback.redis_url


def pytest_unconfigure(config: pytest.Config) -> None:
    fallback = config.stash.get(_FALLBACK, None)
    if fallback is not None:
        fallback.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    fallback = config.stash.get(_FALLBACK, None)
    return [] if fallback is None else fallback.report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that start processes first (a stable sort keeps the rest in order): they
    take seconds each, and under pytest-xdist one left for the end keeps a worker busy
    while the others have run out of tests."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def namespace() -> str:
    """The database name and Redis key prefix of this test process (an xdist worker's id
    in it, "gw0", says whose it is when one is left behind)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"mailroom_test_{os.getpid()}_{worker}_{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
async def database_url(namespace: str) -> AsyncIterator[str]:
    url = make_url(SERVER_URL).set(drivername="postgresql+asyncpg", database=namespace)
    rendered = url.render_as_string(hide_password=False)
    await migrate(rendered)
    yield rendered
    server = await asyncpg.connect(
        user=url.username, password=url.password, host=url.host, port=url.port, database="postgres"
    )
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{namespace}" WITH (FORCE)')
    finally:
        await server.close()


def make_settings(database_url: str, namespace: str, /, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "queue_prefix": namespace,
        "queue_name": "delivery",
        "smtp_host": None,
        "mail_from": "Mailroom Tests <sender@example.com>",
        "max_attempts": 5,
        # BullMQ rounds delays up to whole seconds; keep retries quick in tests.
        "retry_backoff_base": 0.2,
        "retry_backoff_max": 0.5,
        "smtp_timeout": 5,
        "sweep_interval": 0.5,
        "sweep_grace": 2,
        "sending_lease": 30,
        "enqueue_timeout": 2,
        # High enough never to bite; the rate-limit tests set their own.
        "send_rate_limit": "100000/second",
        # No worker metrics server (a fixed port) unless a test asks for one.
        "worker_metrics_port": 0,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def settings(database_url: str, namespace: str) -> Settings:
    return make_settings(database_url, namespace)


@pytest.fixture(scope="session")
def settings_factory(database_url: str, namespace: str) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(database_url, namespace, **overrides)

    return factory


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture(scope="session")
async def redis_client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def _drop_redis_keys(client: redis.Redis, namespace: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
    if keys:
        await client.delete(*keys)


# Every table an email leaves rows in: the emails, what hangs off them, and the counters.
_LOG_TABLES = (
    "emails",
    "delivery_attempts",
    "email_attachments",
    "idempotency_keys",
    "email_count_deltas",
    "email_counts",
    "email_status_totals",
    "provider_count_deltas",
    "provider_counts",
    "delivery_feedback",
    "suppressions",
    "webhook_endpoints",  # with their deliveries and attempts
    "email_events",  # test events (an email's went with it)
)


async def empty_the_log(engine: AsyncEngine) -> None:
    """Delete every row of the log's tables, in one transaction.

    DELETE rather than TRUNCATE: a test leaves a handful of rows, and TRUNCATE gives each
    table and index a new file (≈ 50 ms a test, the largest fixed cost of the suite). The
    lock keeps out any writer still running (a module's live server folds the counters
    every second), so no row committed meanwhile survives, as with TRUNCATE; emails go
    first, since deleting them adds counter deltas, which go next.
    """
    async with engine.begin() as connection:
        # Nothing here needs to survive a crash of the test database's server.
        await connection.execute(text("SET LOCAL synchronous_commit TO off"))
        await connection.execute(text(f"LOCK TABLE {', '.join(_LOG_TABLES)} IN EXCLUSIVE MODE"))
        for table in _LOG_TABLES:
            await connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def clean(
    engine: AsyncEngine, redis_client: redis.Redis, namespace: str
) -> AsyncIterator[None]:
    """An empty log and an empty queue for this test (and nothing left behind)."""
    await empty_the_log(engine)
    await _drop_redis_keys(redis_client, namespace)
    yield
    await _drop_redis_keys(redis_client, namespace)


@pytest.fixture
async def dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    """The BullMQ dispatcher the API uses, to queue jobs and look at the ones queued."""
    dispatcher = Dispatcher(settings)
    yield dispatcher
    await dispatcher.aclose()


@pytest.fixture(autouse=True)
def _fresh_loggers() -> None:
    # A CLI test configures logging for real; later capture_logs must still see events.
    forget_cached_loggers()


@pytest.fixture(scope="session", autouse=True)
async def _redis_namespace_removed(
    redis_client: redis.Redis, namespace: str
) -> AsyncIterator[None]:
    yield
    await _drop_redis_keys(redis_client, namespace)


async def make_key(
    sessions: async_sessionmaker[AsyncSession],
    scopes: tuple[Scope, ...] = tuple(Scope),
    *,
    rate_limit: str | None = None,
) -> str:
    async with sessions() as session:
        _, key = await create_key(
            session, name=f"test-{secrets.token_hex(6)}", scopes=scopes, rate_limit=rate_limit
        )
        await session.commit()
    return key


@pytest.fixture(scope="session")
async def api_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    """A key with every scope, for tests about something other than authentication."""
    return await make_key(sessions)


@asynccontextmanager
async def api_client(
    settings: Settings, inbox: Inbox | None = None, *, key: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, inbox=inbox)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mailroom.test", headers=headers
        ) as client:
            yield client


@pytest.fixture
async def client(settings: Settings, clean: None, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API, authenticated with a key that has every scope."""
    async with api_client(settings, key=api_key) as client:
        yield client


@pytest.fixture
async def anonymous(settings: Settings, clean: None) -> AsyncIterator[httpx.AsyncClient]:
    """The API without credentials."""
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver answering 200 (set its ``behaviour`` for other replies)."""
    async with webhook_receiver() as running:
        yield running


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpTestServer]:
    server = SmtpTestServer()
    await server.start()
    yield server
    await server.stop()


def smtp_transport_for(server: SmtpTestServer, **overrides: Any) -> SmtpTransport:
    config: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "timeout": 5,
        "pool_size": 5,
    }
    config.update(overrides)
    return SmtpTransport(SmtpConfig(**config))


@asynccontextmanager
async def running_worker(
    settings: Settings, server: SmtpTestServer, **kwargs: Any
) -> AsyncIterator[DeliveryWorker]:
    kwargs.setdefault("grace_period", 5)
    transport = smtp_transport_for(
        server, timeout=settings.smtp_timeout, data_timeout=settings.smtp_data_timeout
    )
    worker = DeliveryWorker(settings, transport=transport, **kwargs)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()
