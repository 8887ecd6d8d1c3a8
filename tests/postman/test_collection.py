"""The Postman collection (postman/): it covers the whole API and passes against a live server.

The collection is the API's runnable documentation; these tests keep it honest. The static
tests tie it to the app's OpenAPI document (every operation has a request, every request
names an operation). The live test serves the app with uvicorn, runs a delivery worker
against an in-process SMTP server, and runs the collection with newman: every request, in
order, with its pm.test scripts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.app import create_app
from mailroom.auth.scopes import Scope
from tests.conftest import make_key, make_settings, running_worker
from tests.support.live_server import serving
from tests.support.smtp_server import SmtpTestServer

ROOT = Path(__file__).resolve().parents[2]
POSTMAN = ROOT / "postman"
COLLECTION = POSTMAN / "mailroom.postman_collection.json"
ENVIRONMENT = POSTMAN / "mailroom.postman_environment.json"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"
NEWMAN_TIMEOUT = 90  # seconds; a run takes a few

COLLECTION_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# A path segment that is a variable: Postman's {{emailId}} or :emailId.
_VARIABLE_SEGMENT = re.compile(r"^(\{\{[^{}]+\}\}|:\w+)$")

# The subjects of two requests of the collection, looked for in the inbox and the database.
SENT_SUBJECT = "Hello from the Mailroom Postman collection"
IDEMPOTENT_SUBJECT = "Your receipt (sent once, however often it is retried)"


def _load(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _requests(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every request item of a collection, folders flattened, in run order."""
    for item in items:
        if "item" in item:
            yield from _requests(item["item"])
        else:
            yield item


def _segments(url: str | dict[str, Any]) -> list[str]:
    """The path of a collection URL: "{{baseUrl}}/emails/{{emailId}}?x=1" -> [emails, *]."""
    raw = url if isinstance(url, str) else str(url["raw"])
    assert raw.startswith("{{baseUrl}}/"), f"{raw!r} does not start with {{{{baseUrl}}}}/"
    path = raw.removeprefix("{{baseUrl}}").split("?", 1)[0].split("#", 1)[0]
    return ["*" if _VARIABLE_SEGMENT.match(part) else part for part in path.split("/") if part]


def _matches(template: str, segments: list[str]) -> bool:
    """Whether a request path fits an OpenAPI path: {email_id} takes any one segment."""
    parts = [part for part in template.split("/") if part]
    return len(parts) == len(segments) and all(
        (part.startswith("{") and part.endswith("}")) or part == segment
        for part, segment in zip(parts, segments, strict=True)
    )


def _operations() -> set[tuple[str, str]]:
    # The app's own document, built without connecting to anything (as in test_schemathesis).
    settings = make_settings("postgresql+asyncpg://schema-only@127.0.0.1:1/none", "schema-only")
    document = create_app(settings).openapi()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


def _collection_requests() -> list[tuple[str, str, list[str]]]:
    return [
        (item["name"], item["request"]["method"].upper(), _segments(item["request"]["url"]))
        for item in _requests(_load(COLLECTION)["item"])
    ]


def test_every_operation_has_a_request() -> None:
    requests = _collection_requests()
    missing = sorted(
        (method, path)
        for method, path in _operations()
        if not any(m == method and _matches(path, segments) for _, m, segments in requests)
    )
    assert not missing, f"operations without a request in {COLLECTION.name}: {missing}"


def test_every_request_is_a_documented_operation() -> None:
    operations = _operations()
    stray = [
        (name, method, "/" + "/".join(segments))
        for name, method, segments in _collection_requests()
        if not any(m == method and _matches(path, segments) for m, path in operations)
    ]
    assert not stray, f"requests for no operation of the OpenAPI document: {stray}"


def test_the_collection_is_v2_1_documented_and_tested() -> None:
    collection = _load(COLLECTION)
    assert collection["info"]["schema"] == COLLECTION_SCHEMA
    assert collection["auth"] == {
        "type": "bearer",
        "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}],
    }
    variables = {variable["key"] for variable in collection["variable"]}
    assert {"baseUrl", "apiKey", "limitedKey", "emailId"} <= variables
    items = list(_requests(collection["item"]))
    names = [item["name"] for item in items]
    assert len(names) == len(set(names)), "request names must be unique (setNextRequest uses them)"
    for item in items:
        assert item["request"].get("description"), f"{item['name']!r} has no description"
        tests = [
            line
            for event in item.get("event", [])
            if event["listen"] == "test"
            for line in event["script"]["exec"]
        ]
        assert any("pm.test(" in line for line in tests), f"{item['name']!r} tests nothing"


def test_the_environment_has_the_variables_the_collection_needs() -> None:
    environment = _load(ENVIRONMENT)
    values = {value["key"]: value["value"] for value in environment["values"]}
    assert set(values) == {"baseUrl", "apiKey", "limitedKey"}
    assert values["baseUrl"] == "http://127.0.0.1:8000"


async def _run_newman(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(NEWMAN),
        *args,
        cwd=ROOT,
        # --color off leaves the failure table coloured; its colour library reads this.
        env={**os.environ, "FORCE_COLOR": "0"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=NEWMAN_TIMEOUT)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        pytest.fail(
            f"newman did not finish within {NEWMAN_TIMEOUT} s:\n{output.decode(errors='replace')}",
            pytrace=False,
        )
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("clean")
@pytest.mark.slow
async def test_newman_runs_the_collection_against_a_live_server(
    database_url: str,
    namespace: str,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
) -> None:
    if not NEWMAN.is_file():
        pytest.fail(
            f"newman is not installed ({NEWMAN.relative_to(ROOT)} is missing): run `make install`",
            pytrace=False,
        )
    settings = make_settings(database_url, namespace, send_rate_limit="1000000/second")
    api_key = await make_key(sessions, tuple(Scope))
    limited_key = await make_key(sessions, tuple(Scope), rate_limit="1/minute")

    async with serving(settings) as server, running_worker(settings, smtp_server):
        code, output = await _run_newman(
            "run",
            str(COLLECTION.relative_to(ROOT)),
            "--env-var",
            f"baseUrl={server.base_url}",
            "--env-var",
            f"apiKey={api_key}",
            "--env-var",
            f"limitedKey={limited_key}",
            "--reporters",
            "cli",
            "--color",
            "off",
            "--timeout-request",
            "10000",
        )
    if code != 0:
        pytest.fail(f"newman exited with {code}:\n{output}", pytrace=False)

    # What the collection saw over HTTP, checked from the other side.
    delivered = [m for m in smtp_server.handler.messages() if m.parsed()["Subject"] == SENT_SUBJECT]
    assert len(delivered) == 1, output
    assert sorted(delivered[0].envelope_to) == [
        "audit@example.com",
        "boss@example.com",
        "carl@example.com",
        "jane@example.com",
    ]
    async with sessions() as session:
        created = await session.scalar(
            text("SELECT count(*) FROM emails WHERE subject = :subject"),
            {"subject": IDEMPOTENT_SUBJECT},
        )
    assert created == 1, "the idempotent replay created a second email"
