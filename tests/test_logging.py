"""JSON logs: one line per request, context on every line, secrets and bodies never logged.

``configure_logging`` is run for real (LOG_FORMAT=json) and the root handler's stream is
swapped for a buffer. structlog caches each logger on first use
(``cache_logger_on_first_use=True``), so the fixture forgets Mailroom's cached loggers
before and after: a logger first used under another configuration (a CLI test's, say)
would otherwise keep it, and this file's configuration must not outlive it either.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.app import create_app
from mailroom.auth.scopes import Scope
from mailroom.auth.service import create_key
from mailroom.log_config import _redact, configure_logging, mask_address
from mailroom.settings import Settings
from tests.conftest import running_worker
from tests.support.loggers import forget_cached_loggers
from tests.support.smtp_server import SmtpTestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("clean")

# Loggers configure_logging changes besides the root.
_TUNED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "sqlalchemy",
    "bullmq",
    "aiosmtpd",
    "mail.log",
    "alembic",
)


@dataclass
class Captured:
    stream: io.StringIO

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self) -> list[dict[str, Any]]:
        """Every line, each of which must be one JSON object."""
        events = []
        for line in self.text.splitlines():
            event = json.loads(line)
            assert isinstance(event, dict), line
            events.append(event)
        return events

    def named(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]


@pytest.fixture
def json_log(settings_factory: Callable[..., Settings]) -> Iterator[Captured]:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    tuned = {
        name: (logger.level, list(logger.handlers), logger.propagate)
        for name in _TUNED_LOGGERS
        for logger in [logging.getLogger(name)]
    }
    structlog_config = structlog.get_config()
    forget_cached_loggers()

    configure_logging(settings_factory(log_format="json"))
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    # Keep pytest's own capture handlers (it removes them itself after each phase).
    root.handlers[:] = [*before, handler]
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, (logger_level, handlers, propagate) in tuned.items():
            logger = logging.getLogger(name)
            logger.setLevel(logger_level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        structlog.configure(**structlog_config)
        forget_cached_loggers()


@dataclass(frozen=True)
class NamedKey:
    name: str
    key: str


@pytest.fixture
async def named_key(sessions: async_sessionmaker[AsyncSession]) -> NamedKey:
    name = f"logging-{secrets.token_hex(4)}"
    async with sessions() as session:
        _, key = await create_key(session, name=name, scopes=tuple(Scope))
        await session.commit()
    return NamedKey(name, key)


@asynccontextmanager
async def _client(app: FastAPI, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on ``app`` (its lifespan running), authenticated with ``key``."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://mailroom.test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield client


@pytest.fixture
async def app_client(settings: Settings, named_key: NamedKey) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(settings), named_key.key) as client:
        yield client


RECIPIENT = "jane.doe@example.com"
BODY_TEXT = "The unmistakable body text 7f3a"
BODY_HTML = "<p>The unmistakable html body 9c1e</p>"
EMAIL = {"to": f"Jane Doe <{RECIPIENT}>", "subject": "Hello", "text": BODY_TEXT, "html": BODY_HTML}


def _never_logged(captured: Captured, key: NamedKey) -> None:
    text = captured.text
    for secret in (key.key, f"Bearer {key.key}", BODY_TEXT, BODY_HTML, RECIPIENT):
        assert secret not in text, f"{secret[:20]!r}... was logged"
    # Nor the secret part of the key on its own.
    assert key.key[len("mr_") :] not in text


# -- the request log ----------------------------------------------------------------


async def test_a_send_logs_one_request_completed_line_without_secrets(
    json_log: Captured, app_client: httpx.AsyncClient, named_key: NamedKey
) -> None:
    response = await app_client.post("/send", json=EMAIL, headers={"X-Request-ID": "req-log-1"})
    assert response.status_code == 202, response.text

    [line] = json_log.named("request.completed")
    assert line["method"] == "POST"
    assert line["path"] == "/send"
    assert line["status"] == 202
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert line["request_id"] == "req-log-1"
    assert line["client_ip"] == "127.0.0.1"
    assert line["key"] == named_key.name
    assert line["level"] == "info"
    assert "timestamp" in line and line["logger"] == "mailroom.api"
    _never_logged(json_log, named_key)


async def test_email_accepted_shows_the_recipient_masked(
    json_log: Captured, app_client: httpx.AsyncClient, named_key: NamedKey
) -> None:
    response = await app_client.post("/send", json=EMAIL, headers={"X-Request-ID": "req-log-2"})
    assert response.status_code == 202, response.text

    [line] = json_log.named("email.accepted")
    assert line["to"] == ["j***@example.com"]
    assert line["recipients"] == 1
    assert line["email_id"] == response.json()["id"]
    assert line["request_id"] == "req-log-2"
    _never_logged(json_log, named_key)


async def test_an_unauthenticated_request_is_logged_without_a_key(
    json_log: Captured, app_client: httpx.AsyncClient, named_key: NamedKey
) -> None:
    response = await app_client.post(
        "/send", json=EMAIL, headers={"Authorization": "Bearer mr_not-a-real-key-5d2b"}
    )
    assert response.status_code == 401, response.text

    [line] = json_log.named("request.completed", path="/send")
    assert line["status"] == 401 and line["key"] is None
    assert "mr_not-a-real-key-5d2b" not in json_log.text
    assert json_log.named("email.accepted") == []
    _never_logged(json_log, named_key)


async def test_an_unexpected_error_logs_request_failed_with_the_exception(
    json_log: Captured, settings: Settings, named_key: NamedKey
) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom 4e1d")

    async with _client(app, named_key.key) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-log-boom"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "kaboom" not in response.text

    [failed] = json_log.named("request.failed")
    assert failed["level"] == "error"
    assert failed["method"] == "GET" and failed["path"] == "/boom"
    assert "RuntimeError: kaboom 4e1d" in failed["exception"]
    assert "Traceback" in failed["exception"]
    assert failed["request_id"] == "req-log-boom"
    [completed] = json_log.named("request.completed", path="/boom")
    assert completed["status"] == 500
    assert completed["request_id"] == "req-log-boom"
    _never_logged(json_log, named_key)


# -- the worker's lines carry the request's id --------------------------------------


async def _status(client: httpx.AsyncClient, email_id: str) -> str:
    response = await client.get(f"/emails/{email_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def test_the_worker_logs_email_sent_with_the_request_id(
    json_log: Captured,
    app_client: httpx.AsyncClient,
    named_key: NamedKey,
    settings: Settings,
    smtp_server: SmtpTestServer,
) -> None:
    async with running_worker(settings, smtp_server):
        response = await app_client.post(
            "/send", json=EMAIL, headers={"X-Request-ID": "req-log-worker"}
        )
        assert response.status_code == 202, response.text
        email_id = response.json()["id"]
        await eventually(
            lambda: _status(app_client, email_id), lambda s: s == "sent", what="delivery"
        )

        # The line is written after the status is committed: wait for it, too.
        async def sent_lines() -> list[dict[str, Any]]:
            return json_log.named("email.sent", email_id=email_id)

        await eventually(sent_lines, bool, what="the email.sent line")

    [sent] = json_log.named("email.sent", email_id=email_id)
    assert sent["request_id"] == "req-log-worker"
    assert sent["to"] == ["j***@example.com"]
    assert sent["outcome"] == "accepted" and sent["code"] == 250
    assert sent["logger"] == "mailroom.worker.delivery"
    [accepted] = json_log.named("email.accepted", email_id=email_id)
    assert accepted["request_id"] == sent["request_id"]
    _never_logged(json_log, named_key)


# -- the building blocks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jane@example.com", "j***@example.com"),
        ("j@example.com", "j***@example.com"),
        ("Jane.Doe+tag@mail.example.org", "J***@mail.example.org"),
        ("élodie@exämple.com", "é***@exämple.com"),
        ('"a@b"@example.com', '"***@example.com'),  # the last "@" splits
        ("@example.com", "***@example.com"),
        ("no-at-sign", "***"),
        ("", "***"),
    ],
)
def test_mask_address(address: str, masked: str) -> None:
    assert mask_address(address) == masked


NEVER_LOGGED = (
    "authorization",
    "password",
    "smtp_password",
    "api_key",
    "secret",
    "token",
    "text",
    "html",
    "body",
)


def test_redact_blanks_secret_and_body_fields() -> None:
    event: structlog.types.EventDict = {name: f"value of {name}" for name in NEVER_LOGGED}
    event.update(event="x", subject="kept", email_id="kept-too")
    redacted = _redact(None, "info", event)
    assert {name: redacted[name] for name in NEVER_LOGGED} == dict.fromkeys(
        NEVER_LOGGED, "[redacted]"
    )
    assert redacted["subject"] == "kept" and redacted["email_id"] == "kept-too"
    assert redacted["event"] == "x"


def test_redact_leaves_other_events_alone() -> None:
    event: structlog.types.EventDict = {"event": "x", "to": ["j***@example.com"], "status": 1}
    assert _redact(None, "info", dict(event)) == event


def test_secret_fields_are_redacted_in_the_output(json_log: Captured) -> None:
    structlog.get_logger("mailroom.test").info(
        "test.secrets",
        authorization="Bearer mr_abc123secret",
        password="hunter2-pw",
        text="secret body text",
        html="<p>secret html</p>",
        kept="visible",
    )
    [line] = json_log.named("test.secrets")
    for name in ("authorization", "password", "text", "html"):
        assert line[name] == "[redacted]"
    assert line["kept"] == "visible"
    for value in ("mr_abc123secret", "hunter2-pw", "secret body text", "secret html"):
        assert value not in json_log.text


def test_other_libraries_records_are_json_lines_too(json_log: Captured) -> None:
    logging.getLogger("some.library").warning("library says %s", "hello")
    [line] = json_log.named("library says hello")
    assert line["level"] == "warning" and line["logger"] == "some.library"
    assert "timestamp" in line
