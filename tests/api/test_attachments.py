"""Attachments through the real app: accepted, named, typed, limited, logged without content.

POST /send and POST /send/batch with `attachments`, GET /emails/{id}, GET /logs/email,
the email.accepted log line and Idempotency-Key replays. Delivery of the bytes is in
tests/worker/test_attachment_delivery.py.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.settings import Settings
from tests.api.shapes import DETAIL_KEYS, ITEM_KEYS, assert_error
from tests.conftest import api_client
from tests.support.factories import (
    attachment_json,
    awkward_bytes,
    png_bytes,
    stored_attachments,
    stored_emails,
)
from tests.test_logging import Captured, json_log  # noqa: F401 - json_log is a fixture

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}
HTML = '<p>Hello</p><img src="cid:logo" alt="Logo">'
INFO_KEYS = {"filename", "contentType", "contentId", "size"}
# Small limits for the size tests: one file, and all of an email's files together.
ONE_FILE = 1000
ALL_FILES = 2500


def _with(*attachments: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**VALID, "attachments": list(attachments), **changes}


def _file(name: str = "a.bin", size: int = 10, **fields: Any) -> dict[str, Any]:
    return attachment_json(name, awkward_bytes(size, seed=size), **fields)


async def _accepted(client: httpx.AsyncClient, body: Any, **kwargs: Any) -> dict[str, Any]:
    response = await client.post("/send", json=body, **kwargs)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def _detail(client: httpx.AsyncClient, email_id: str) -> httpx.Response:
    response = await client.get(f"/emails/{email_id}")
    assert response.status_code == 200, response.text
    assert set(response.json()) == DETAIL_KEYS
    return response


def _fields(response: httpx.Response) -> list[str]:
    error = assert_error(response, 422, "validation_error")
    details = error["details"]
    assert isinstance(details, list) and details
    return [item["field"] for item in details]


def _too_large(response: httpx.Response) -> list[dict[str, str]]:
    error = assert_error(response, 413, "payload_too_large")
    details: list[dict[str, str]] = error["details"]
    assert isinstance(details, list) and details, error
    for item in details:
        assert set(item) == {"field", "message"}
    assert error["message"].startswith("Attachments too large. ")
    assert details[0]["field"] in error["message"]
    return details


def _keys(value: Any) -> set[str]:
    """Every object key anywhere in a JSON document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


async def _nothing_stored(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await stored_emails(sessions) == {}
    assert await stored_attachments(sessions) == []


@pytest.fixture
async def limited(
    settings_factory: Callable[..., Settings], clean: None, api_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with MAX_ATTACHMENT_BYTES=1000 and MAX_ATTACHMENTS_BYTES=2500."""
    settings = settings_factory(max_attachment_bytes=ONE_FILE, max_attachments_bytes=ALL_FILES)
    async with api_client(settings, key=api_key) as client:
        yield client


# -- accepted, stored, listed ------------------------------------------------------------------


async def test_attachments_are_stored_with_their_bytes_and_listed_without_them(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    data = awkward_bytes(40_000, seed=11)
    logo = png_bytes()
    report = b"%PDF-1.4\n" + awkward_bytes(3000, seed=12)
    accepted = await _accepted(
        client,
        _with(
            attachment_json("data.bin", data),
            attachment_json("logo.png", logo, contentId="<logo>"),
            attachment_json("report.pdf", report, contentType="Application/PDF"),
            html=HTML,
        ),
    )
    assert accepted["status"] == "queued"

    response = await _detail(client, accepted["id"])
    detail = response.json()
    assert detail["attachments"] == [
        {
            "filename": "data.bin",
            "contentType": "application/octet-stream",
            "contentId": None,
            "size": 40_000,
        },
        {
            "filename": "logo.png",
            "contentType": "image/png",
            "contentId": "logo",
            "size": len(logo),
        },
        {
            "filename": "report.pdf",
            "contentType": "application/pdf",
            "contentId": None,
            "size": len(report),
        },
    ]
    assert "content" not in _keys(detail)
    for content in (data, logo, report):
        encoded = base64.b64encode(content).decode()
        assert encoded[:24] not in response.text
        assert encoded[-24:] not in response.text

    rows = await stored_attachments(sessions, uuid.UUID(accepted["id"]))
    assert [(r.position, r.filename, r.size) for r in rows] == [
        (0, "data.bin", 40_000),
        (1, "logo.png", len(logo)),
        (2, "report.pdf", len(report)),
    ]
    assert [r.content for r in rows] == [data, logo, report]
    [email] = (await stored_emails(sessions)).values()
    assert email.attachment_count == 3


async def test_an_email_without_attachments_lists_none(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(client, VALID)
    assert (await _detail(client, accepted["id"])).json()["attachments"] == []
    accepted = await _accepted(client, _with())
    assert (await _detail(client, accepted["id"])).json()["attachments"] == []


async def test_the_log_list_carries_no_attachment_content(client: httpx.AsyncClient) -> None:
    content = awkward_bytes(5000, seed=21)
    accepted = await _accepted(client, _with(attachment_json("secret.bin", content)))

    response = await client.get("/logs/email")
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert item["id"] == accepted["id"]
    assert set(item) == ITEM_KEYS
    encoded = base64.b64encode(content).decode()
    assert encoded[:24] not in response.text and encoded[-24:] not in response.text
    assert "content" not in _keys(response.json())


async def test_a_zero_byte_file_is_an_attachment_of_size_0(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(client, _with({"filename": "empty.txt", "content": ""}))
    [info] = (await _detail(client, accepted["id"])).json()["attachments"]
    assert info == {
        "filename": "empty.txt",
        "contentType": "text/plain",
        "contentId": None,
        "size": 0,
    }


async def test_line_wrapped_base64_is_accepted(client: httpx.AsyncClient) -> None:
    content = awkward_bytes(2000, seed=3)
    wrapped = base64.encodebytes(content).decode().replace("\n", "\r\n")
    accepted = await _accepted(client, _with({"filename": "w.bin", "content": wrapped}))
    [info] = (await _detail(client, accepted["id"])).json()["attachments"]
    assert info["size"] == 2000


async def test_twenty_attachments_are_accepted(client: httpx.AsyncClient) -> None:
    files = [_file(f"f{n:02}.txt", 5) for n in range(20)]
    accepted = await _accepted(client, _with(*files))
    listed = (await _detail(client, accepted["id"])).json()["attachments"]
    assert [a["filename"] for a in listed] == [f"f{n:02}.txt" for n in range(20)]


# -- filenames and types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored", "content_type"),
    [
        pytest.param("../../etc/passwd", "passwd", "application/octet-stream", id="dot-dot"),
        pytest.param("C:\\temp\\x.pdf", "x.pdf", "application/pdf", id="windows-path"),
        pytest.param("/home/jane/report.csv", "report.csv", "text/csv", id="absolute"),
        pytest.param("in\x07voice\x1b\x7f.pdf", "invoice.pdf", "application/pdf", id="controls"),
        pytest.param("a\r\nb.txt", "ab.txt", "text/plain", id="crlf"),
        pytest.param("evil\u202efdp.exe", "evilfdp.exe", None, id="right-to-left-override"),
        pytest.param("  photo.JPG  ", "photo.JPG", "image/jpeg", id="spaces-upper-case"),
        pytest.param("r\u00e9sum\u00e9.pdf", "r\u00e9sum\u00e9.pdf", "application/pdf", id="utf8"),
        pytest.param("x.unknownext", "x.unknownext", "application/octet-stream", id="unknown"),
        pytest.param("README", "README", "application/octet-stream", id="no-extension"),
    ],
)
async def test_the_filename_is_sanitised_and_the_type_guessed_from_it(
    client: httpx.AsyncClient, given: str, stored: str, content_type: str | None
) -> None:
    accepted = await _accepted(client, _with(_file(given)))
    [info] = (await _detail(client, accepted["id"])).json()["attachments"]
    assert info["filename"] == stored
    if content_type is not None:
        assert info["contentType"] == content_type


async def test_a_given_content_type_is_kept_lower_cased(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(
        client,
        _with(
            _file("data.pdf", contentType="Application/Octet-Stream"),
            _file("chart", contentType="image/svg+xml"),
        ),
    )
    listed = (await _detail(client, accepted["id"])).json()["attachments"]
    assert [a["contentType"] for a in listed] == ["application/octet-stream", "image/svg+xml"]


async def test_a_content_id_is_stored_without_brackets(client: httpx.AsyncClient) -> None:
    accepted = await _accepted(
        client,
        _with(
            attachment_json("a.png", png_bytes(), contentId="<logo@example.com>"),
            attachment_json("b.png", png_bytes(), contentId="banner"),
            html='<img src="cid:logo@example.com"><img src="cid:banner">',
        ),
    )
    listed = (await _detail(client, accepted["id"])).json()["attachments"]
    assert [a["contentId"] for a in listed] == ["logo@example.com", "banner"]


# -- validation ------------------------------------------------------------------------------------


INVALID = [
    # content
    pytest.param(_with({"filename": "a.bin", "content": "aGk*"}), "content", id="base64-bad-char"),
    pytest.param(_with({"filename": "a.bin", "content": "aGk"}), "content", id="base64-no-padding"),
    pytest.param(_with({"filename": "a.bin", "content": "aGk=="}), "content", id="base64-padding"),
    pytest.param(_with({"filename": "a.bin", "content": "-_8="}), "content", id="base64-url-safe"),
    pytest.param(
        _with({"filename": "a.bin", "content": "aGk=é"}), "content", id="base64-non-ascii"
    ),
    pytest.param(_with({"filename": "a.bin", "content": None}), "content", id="content-null"),
    pytest.param(_with({"filename": "a.bin", "content": 42}), "content", id="content-number"),
    pytest.param(_with({"filename": "a.bin"}), "content", id="content-missing"),
    # filename
    pytest.param(_with({"filename": "../", "content": "aGk="}), "filename", id="filename-dir"),
    pytest.param(_with({"filename": "\x00", "content": "aGk="}), "filename", id="filename-nul"),
    pytest.param(_with({"filename": "..", "content": "aGk="}), "filename", id="filename-dot-dot"),
    pytest.param(_with({"filename": "", "content": "aGk="}), "filename", id="filename-empty"),
    pytest.param(_with({"filename": "  ", "content": "aGk="}), "filename", id="filename-blank"),
    pytest.param(_with({"filename": "x" * 256, "content": "aGk="}), "filename", id="filename-256"),
    pytest.param(_with({"filename": 7, "content": "aGk="}), "filename", id="filename-number"),
    pytest.param(_with({"content": "aGk="}), "filename", id="filename-missing"),
    # contentId
    pytest.param(_with(_file(contentId="lo go")), "contentId", id="content-id-space"),
    pytest.param(
        _with(_file(contentId="logo\r\nBcc: x@example.com")), "contentId", id="content-id-crlf"
    ),
    pytest.param(_with(_file(contentId="")), "contentId", id="content-id-empty"),
    # unknown fields
    pytest.param(_with(_file(inline=True)), "inline", id="unknown-inline"),
    pytest.param(_with(attachment_json("a.txt", b"hi", size=2)), "size", id="unknown-size"),
    pytest.param(_with(_file(encoding="base64")), "encoding", id="unknown-encoding"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
async def test_an_invalid_attachment_is_422_naming_its_field(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/send", json=body)
    assert _fields(response) == [f"attachments[0].{field}"]
    await _nothing_stored(sessions)


async def test_the_invalid_attachment_is_named_by_its_index(client: httpx.AsyncClient) -> None:
    body = _with(_file("ok.txt"), _file("ok2.txt"), {"filename": "bad.bin", "content": "***"})
    assert _fields(await client.post("/send", json=body)) == ["attachments[2].content"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_with(*[_file(f"f{n}.txt", 3) for n in range(21)]), id="21-attachments"),
        pytest.param({**VALID, "attachments": _file()}, id="not-a-list"),
        pytest.param({**VALID, "attachments": None}, id="null"),
        pytest.param({**VALID, "attachments": "aGk="}, id="a-string"),
    ],
)
async def test_the_attachments_list_itself_is_checked(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], body: dict[str, Any]
) -> None:
    assert _fields(await client.post("/send", json=body)) == ["attachments"]
    await _nothing_stored(sessions)


async def test_twenty_one_attachments_name_the_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/send", json=_with(*[_file(f"{n}.txt", 3) for n in range(21)]))
    assert "20" in assert_error(response, 422, "validation_error")["details"][0]["message"]


CONTENT_TYPES = [
    pytest.param("text/plain; charset=utf-8", id="parameters"),
    pytest.param('application/pdf; name="x.pdf"', id="name-parameter"),
    pytest.param("multipart/mixed", id="multipart-mixed"),
    pytest.param("message/rfc822", id="message-rfc822"),
    pytest.param("pdf", id="no-slash"),
    pytest.param("text/html\r\nX-Injected: 1", id="crlf"),
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
async def test_a_content_type_with_parameters_or_a_container_type_is_422(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], content_type: str
) -> None:
    response = await client.post("/send", json=_with(_file(contentType=content_type)))
    [field] = _fields(response)
    assert field.startswith("attachments[0]")
    await _nothing_stored(sessions)


async def test_a_bad_content_type_is_named_as_the_content_type_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/send", json=_with(_file(contentType="multipart/mixed")))
    assert _fields(response) == ["attachments[0].contentType"]


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(("logo", "logo"), id="same"),
        pytest.param(("logo", "<logo>"), id="same-without-brackets"),
        pytest.param(("a", "logo", " <logo> "), id="third-repeats-second"),
    ],
)
async def test_duplicate_content_ids_are_422(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], ids: tuple[str, ...]
) -> None:
    files = [attachment_json(f"{n}.png", png_bytes(), contentId=i) for n, i in enumerate(ids)]
    response = await client.post("/send", json=_with(*files, html=HTML))
    error = assert_error(response, 422, "validation_error")
    # A rule about the email as a whole: it names the body, as the other such rules do.
    assert [d["field"] for d in error["details"]] == ["body"]
    assert "contentId" in error["details"][0]["message"]
    await _nothing_stored(sessions)


async def test_different_content_ids_are_accepted(client: httpx.AsyncClient) -> None:
    files = [attachment_json(f"{i}.png", png_bytes(), contentId=i) for i in ("a", "b", "A")]
    await _accepted(client, _with(*files, html=HTML))


async def test_a_422_does_not_echo_the_content(client: httpx.AsyncClient) -> None:
    content = base64.b64encode(awkward_bytes(3000, seed=5)).decode() + "*"
    response = await client.post("/send", json=_with({"filename": "a.bin", "content": content}))
    assert _fields(response) == ["attachments[0].content"]
    assert content[:24] not in response.text


# -- size limits -----------------------------------------------------------------------------------


async def test_one_file_over_max_attachment_bytes_is_413_naming_it(
    limited: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await limited.post(
        "/send", json=_with(_file("small.txt", 10), _file("big.bin", ONE_FILE + 1))
    )
    [detail] = _too_large(response)
    assert detail["field"] == "attachments[1].content"
    assert "'big.bin'" in detail["message"]
    assert "MAX_ATTACHMENT_BYTES" in detail["message"]
    await _nothing_stored(sessions)


async def test_files_each_under_but_together_over_max_attachments_bytes_are_413(
    limited: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    files = [_file(f"{n}.bin", 900) for n in range(3)]  # 2700 > 2500
    [detail] = _too_large(await limited.post("/send", json=_with(*files)))
    assert detail["field"] == "attachments"
    assert "MAX_ATTACHMENTS_BYTES" in detail["message"]
    await _nothing_stored(sessions)


async def test_every_size_problem_is_listed(limited: httpx.AsyncClient) -> None:
    files = [_file("a.bin", ONE_FILE + 1), _file("b.bin", 500), _file("c.bin", ONE_FILE + 1)]
    details = _too_large(await limited.post("/send", json=_with(*files)))
    assert [d["field"] for d in details] == [
        "attachments[0].content",
        "attachments[2].content",
        "attachments",
    ]


async def test_files_exactly_at_both_limits_are_accepted(
    limited: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sizes = [ONE_FILE, ONE_FILE, ALL_FILES - 2 * ONE_FILE]
    accepted = await _accepted(limited, _with(*[_file(f"{n}.bin", s) for n, s in enumerate(sizes)]))
    listed = (await _detail(limited, accepted["id"])).json()["attachments"]
    assert [a["size"] for a in listed] == sizes
    rows = await stored_attachments(sessions, uuid.UUID(accepted["id"]))
    assert [len(r.content) for r in rows] == sizes


async def test_the_limit_is_on_decoded_bytes_not_on_base64(limited: httpx.AsyncClient) -> None:
    # 1000 bytes are 1336 characters of base64: under the limit all the same.
    body = _with(_file("a.bin", ONE_FILE))
    assert len(body["attachments"][0]["content"]) > ONE_FILE
    await _accepted(limited, body)


async def test_a_413_reserves_no_idempotency_key(limited: httpx.AsyncClient) -> None:
    key = f"too-large-{secrets.token_hex(6)}"
    too_large = await limited.post(
        "/send", json=_with(_file("big.bin", ONE_FILE + 1)), headers={"Idempotency-Key": key}
    )
    _too_large(too_large)
    # The key was not spent on the refused request: a new body with it is a first send.
    response = await limited.post(
        "/send", json=_with(_file("ok.bin", 10)), headers={"Idempotency-Key": key}
    )
    assert response.status_code == 202, response.text
    assert "Idempotent-Replayed" not in response.headers


async def test_in_a_batch_the_oversized_email_alone_is_refused_as_payload_too_large(
    limited: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    emails = [
        _with(_file("first.bin", 100), subject="first"),
        _with(_file("ok.bin", 10), _file("big.bin", ONE_FILE + 1), subject="too large"),
        _with(*[_file(f"{n}.bin", 900) for n in range(3)], subject="too much"),
        _with(_file("last.bin", ONE_FILE), subject="last"),
        {**VALID, "subject": "none"},
    ]
    response = await limited.post("/send/batch", json={"emails": emails})
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 2)
    one, too_large, too_much, last, none = body["data"]
    assert set(too_large) == {"index", "error"}
    assert too_large["error"]["code"] == "payload_too_large"
    assert [d["field"] for d in too_large["error"]["details"]] == [
        "emails[1].attachments[1].content"
    ]
    assert "emails[1].attachments[1].content" in too_large["error"]["message"]
    assert too_much["error"]["code"] == "payload_too_large"
    assert [d["field"] for d in too_much["error"]["details"]] == ["emails[2].attachments"]

    stored = await stored_emails(sessions)
    ids = {uuid.UUID(item["id"]) for item in (one, last, none)}
    assert set(stored) == ids
    by_subject = {e.subject: e for e in stored.values()}
    assert by_subject["first"].attachment_count == 1
    assert by_subject["none"].attachment_count == 0
    rows = await stored_attachments(sessions)
    assert sorted((r.email_id, r.filename, r.size) for r in rows) == sorted(
        [
            (by_subject["first"].id, "first.bin", 100),
            (by_subject["last"].id, "last.bin", ONE_FILE),
        ]
    )
    first = (await _detail(limited, str(by_subject["first"].id))).json()
    assert [a["filename"] for a in first["attachments"]] == ["first.bin"]


async def test_a_batch_of_only_oversized_emails_stores_nothing(
    limited: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    emails = [_with(_file("big.bin", ONE_FILE + 1)), _with(_file("big2.bin", ONE_FILE + 2))]
    response = await limited.post("/send/batch", json={"emails": emails})
    error = assert_error(response, 422, "validation_error")
    assert [d["field"] for d in error["details"]] == [
        "emails[0].attachments[0].content",
        "emails[1].attachments[0].content",
    ]
    await _nothing_stored(sessions)


async def test_in_a_batch_an_invalid_attachment_is_a_validation_error_of_its_email(
    client: httpx.AsyncClient,
) -> None:
    emails = [_with(_file("ok.bin")), _with({"filename": "../", "content": "aGk="})]
    response = await client.post("/send/batch", json={"emails": emails})
    assert response.status_code == 202, response.text
    _, rejected = response.json()["data"]
    assert rejected["error"]["code"] == "validation_error"
    assert [d["field"] for d in rejected["error"]["details"]] == [
        "emails[1].attachments[0].filename"
    ]


async def test_default_limits_take_a_10_mib_file_and_refuse_one_byte_more(
    client: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """MAX_BODY_BYTES leaves room for a whole MAX_ATTACHMENT_BYTES file in base64."""
    limit = settings.max_attachment_bytes
    assert limit == settings.max_attachments_bytes == 10 * 1024 * 1024
    content = awkward_bytes(limit, seed=10)
    accepted = await _accepted(client, _with(attachment_json("ten.bin", content)))
    [row] = await stored_attachments(sessions, uuid.UUID(accepted["id"]))
    assert row.size == limit and row.content == content

    over = await client.post("/send", json=_with(attachment_json("ten.bin", content + b"!")))
    # Refused by the attachment checks (which name it), not by the body limit.
    details = _too_large(over)
    assert [d["field"] for d in details] == ["attachments[0].content", "attachments"]


# -- the log line --------------------------------------------------------------------------------


async def test_email_accepted_logs_the_attachment_count_but_no_content(
    json_log: Captured,  # noqa: F811 - the fixture imported above
    client: httpx.AsyncClient,
) -> None:
    secret = awkward_bytes(3000, seed=99)
    encoded = base64.b64encode(secret).decode()
    body = _with(attachment_json("one.bin", secret), attachment_json("two.txt", b"second file"))
    accepted = await _accepted(client, body)

    [line] = json_log.named("email.accepted")
    assert line["email_id"] == accepted["id"]
    assert line["attachments"] == 2
    assert encoded[:24] not in json_log.text and encoded[-24:] not in json_log.text
    assert base64.b64encode(b"second file").decode() not in json_log.text
    assert all("content" not in event for event in json_log.events())


# -- idempotency -----------------------------------------------------------------------------------


async def test_the_same_key_and_attachment_replay_the_first_response(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    key = f"attach-{secrets.token_hex(6)}"
    content = awkward_bytes(10_000, seed=8)
    body = _with(attachment_json("a.bin", content), attachment_json("logo.png", png_bytes()))
    first = await _accepted(client, body, headers={"Idempotency-Key": key})
    replay = await client.post("/send", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 202, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first
    # The same bytes, base64 wrapped over lines: the same request.
    wrapped = {
        **body,
        "attachments": [
            {**body["attachments"][0], "content": base64.encodebytes(content).decode()},
            body["attachments"][1],
        ],
    }
    again = await client.post("/send", json=wrapped, headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json() == first

    assert list(await stored_emails(sessions)) == [uuid.UUID(first["id"])]
    assert len(await stored_attachments(sessions)) == 2


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: c[:-1] + bytes([c[-1] ^ 1]), id="last-byte"),
        pytest.param(lambda c: bytes([c[0] ^ 0x80]) + c[1:], id="first-byte"),
        pytest.param(lambda c: c + b"\x00", id="one-byte-more"),
    ],
)
async def test_the_same_key_with_another_attachment_byte_is_refused(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    change: Callable[[bytes], bytes],
) -> None:
    key = f"attach-{secrets.token_hex(6)}"
    content = awkward_bytes(10_000, seed=9)
    await _accepted(
        client, _with(attachment_json("a.bin", content)), headers={"Idempotency-Key": key}
    )
    response = await client.post(
        "/send",
        json=_with(attachment_json("a.bin", change(content))),
        headers={"Idempotency-Key": key},
    )
    assert_error(response, 422, "idempotency_key_reused")
    assert len(await stored_emails(sessions)) == 1
    [row] = await stored_attachments(sessions)
    assert row.content == content


@pytest.mark.parametrize(
    "attachment",
    [
        pytest.param(attachment_json("b.bin", b"same"), id="filename"),
        pytest.param(attachment_json("a.bin", b"same", contentType="text/plain"), id="type"),
        pytest.param(attachment_json("a.bin", b"same", contentId="x"), id="content-id"),
    ],
)
async def test_the_same_key_with_another_attachment_field_is_refused(
    client: httpx.AsyncClient, attachment: dict[str, Any]
) -> None:
    key = f"attach-{secrets.token_hex(6)}"
    await _accepted(
        client, _with(attachment_json("a.bin", b"same")), headers={"Idempotency-Key": key}
    )
    response = await client.post("/send", json=_with(attachment), headers={"Idempotency-Key": key})
    assert_error(response, 422, "idempotency_key_reused")
