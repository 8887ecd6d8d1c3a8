"""Attachments on their own: decoding, naming, typing, ids, and the MIME message they make.

Unit tests of mailroom.emails.attachments and of build_message with attachments; nothing
here touches the database, Redis or a socket.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from mailroom.emails.attachments import (
    MAX_ATTACHMENTS,
    MAX_FILENAME_LENGTH,
    Attachment,
    check_content_id,
    content_type_for,
    decode_content,
    encode_content,
    safe_filename,
)
from mailroom.emails.message import build_message
from mailroom.emails.models import Email
from tests.support.factories import awkward_bytes, email_row, png_bytes

CREATED = datetime(2026, 11, 27, 9, 30, 15, tzinfo=UTC)
HTML = '<p>Hello</p><img src="cid:logo" alt="Logo">'
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _email(**overrides: Any) -> Email:
    return email_row(CREATED, message_id="<attachments-test@example.com>", **overrides)


def _build(attachments: Sequence[Attachment], **overrides: Any) -> EmailMessage:
    raw = build_message(_email(**overrides), attachments)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _tree(part: EmailMessage) -> Any:
    """The MIME structure: a content type, or (multipart type, [children])."""
    if part.is_multipart():
        children = [p for p in part.iter_parts() if isinstance(p, EmailMessage)]
        return (part.get_content_type(), [_tree(p) for p in children])
    return part.get_content_type()


def _leaves(message: EmailMessage) -> list[EmailMessage]:
    return [p for p in message.walk() if isinstance(p, EmailMessage) and not p.is_multipart()]


def _by_filename(message: EmailMessage, filename: str) -> EmailMessage:
    [part] = [p for p in _leaves(message) if p.get_filename() == filename]
    return part


def _bytes(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes), f"{part.get_content_type()} has no decodable payload"
    return payload


# -- decode_content / encode_content ---------------------------------------------------------


def test_base64_round_trips_every_byte() -> None:
    data = awkward_bytes(64 * 1024)
    assert set(data) == set(range(256))
    assert decode_content(encode_content(data)) == data


def test_line_wrapped_base64_is_accepted_as_mime_writes_it() -> None:
    data = awkward_bytes(1000)
    wrapped = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    assert "\r\n" in wrapped
    assert decode_content(wrapped) == data
    assert decode_content(" aGk= \n") == b"hi"


def test_an_empty_string_is_an_empty_file() -> None:
    assert decode_content("") == b""


def test_bytes_are_taken_as_they_are() -> None:
    assert decode_content(b"not base64 at all") == b"not base64 at all"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("aGk*", id="bad-character"),
        pytest.param("aGk", id="missing-padding"),
        pytest.param("YQ=", id="short-padding"),
        pytest.param("aGk==", id="extra-padding"),
        pytest.param("aGk=aGk=", id="padding-in-the-middle"),
        pytest.param("====", id="only-padding"),
        pytest.param("a", id="one-character"),
        pytest.param("-_8=", id="url-safe-alphabet"),
        pytest.param("aGk=é", id="non-ascii"),
        pytest.param("data:text/plain;base64,aGk=", id="data-url"),
    ],
)
def test_invalid_base64_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="is not valid base64"):
        decode_content(value)


@pytest.mark.parametrize("value", [None, 5, 1.5, ["aGk="], {"b64": "aGk="}])
def test_content_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="must be a base64 string"):
        decode_content(value)


# -- safe_filename -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        pytest.param("invoice-1234.pdf", "invoice-1234.pdf", id="plain"),
        pytest.param("../../etc/passwd", "passwd", id="dot-dot-slash"),
        pytest.param("/etc/passwd", "passwd", id="absolute"),
        pytest.param("C:\\temp\\x.pdf", "x.pdf", id="windows-path"),
        pytest.param("..\\..\\boot.ini", "boot.ini", id="windows-dot-dot"),
        pytest.param("in\x07voice\x1b.pdf", "invoice.pdf", id="control-characters"),
        pytest.param("a\r\nContent-Type: x.txt", "aContent-Type: x.txt", id="crlf"),
        pytest.param("a\tb.txt", "ab.txt", id="tab"),
        pytest.param("x\x7f\x85y.txt", "xy.txt", id="del-and-c1"),
        pytest.param("evil\u202efdp.exe", "evilfdp.exe", id="right-to-left-override"),
        pytest.param("zero\u200bwidth.txt", "zerowidth.txt", id="zero-width-space"),
        pytest.param("  report.pdf  ", "report.pdf", id="outer-spaces"),
        pytest.param("trailing.pdf.", "trailing.pdf", id="trailing-dot"),
        pytest.param("re\u0301sume\u0301.pdf", "r\u00e9sum\u00e9.pdf", id="nfc"),
        pytest.param("日本語.txt", "日本語.txt", id="non-latin"),
        pytest.param("x" * MAX_FILENAME_LENGTH, "x" * MAX_FILENAME_LENGTH, id="longest"),
    ],
)
def test_safe_filename_keeps_only_the_name(given: str, safe: str) -> None:
    assert safe_filename(given) == safe


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="spaces"),
        pytest.param("../", id="dot-dot-slash"),
        pytest.param("..", id="dot-dot"),
        pytest.param(".", id="dot"),
        pytest.param("/", id="slash"),
        pytest.param("dir/", id="directory"),
        pytest.param("C:\\temp\\", id="windows-directory"),
        pytest.param("\x00", id="nul"),
        pytest.param("\x00\x01\r\n", id="only-control-characters"),
        pytest.param("../\x00", id="dot-dot-nul"),
        pytest.param("\u202e", id="only-format-characters"),
    ],
)
def test_a_filename_that_names_no_file_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="must name a file"):
        safe_filename(given)


def test_a_filename_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_FILENAME_LENGTH}"):
        safe_filename("x" * (MAX_FILENAME_LENGTH + 1))
    # The limit applies to what is left, not to what was given.
    assert safe_filename("dir/" * 100 + "x.pdf") == "x.pdf"


# -- content_type_for --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "guessed"),
    [
        pytest.param("a.pdf", "application/pdf", id="pdf"),
        pytest.param("photo.JPG", "image/jpeg", id="upper-case-extension"),
        pytest.param("logo.png", "image/png", id="png"),
        pytest.param("notes.txt", "text/plain", id="txt"),
        pytest.param("table.csv", "text/csv", id="csv"),
        pytest.param("archive.zip", "application/zip", id="zip"),
        pytest.param("x.unknownext", "application/octet-stream", id="unknown-extension"),
        pytest.param("README", "application/octet-stream", id="no-extension"),
    ],
)
def test_the_type_is_guessed_from_the_filename_when_not_given(filename: str, guessed: str) -> None:
    assert content_type_for(filename, None) == guessed


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param("application/pdf", "application/pdf", id="as-is"),
        pytest.param("Application/PDF", "application/pdf", id="lower-cased"),
        pytest.param(" image/png ", "image/png", id="stripped"),
        pytest.param("image/svg+xml", "image/svg+xml", id="suffix"),
        pytest.param("application/vnd.ms-excel", "application/vnd.ms-excel", id="vendor"),
    ],
)
def test_a_given_type_wins_over_the_filename(given: str, kept: str) -> None:
    assert content_type_for("whatever.txt", given) == kept


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param("text/plain; charset=utf-8", "without parameters", id="parameters"),
        pytest.param('application/pdf; name="x.pdf"', "without parameters", id="name-parameter"),
        pytest.param("pdf", "MIME type", id="no-slash"),
        pytest.param("text/", "MIME type", id="no-subtype"),
        pytest.param("/plain", "MIME type", id="no-type"),
        pytest.param("text/plain/x", "MIME type", id="two-slashes"),
        pytest.param("", "MIME type", id="empty"),
        pytest.param("text/plain\r\nBcc: x@example.com", "MIME type", id="crlf"),
        pytest.param("text/pl ain", "MIME type", id="space"),
        pytest.param("multipart/mixed", "cannot be attached", id="multipart-mixed"),
        pytest.param("Multipart/Alternative", "cannot be attached", id="multipart-alternative"),
        pytest.param("message/rfc822", "cannot be attached", id="message-rfc822"),
    ],
)
def test_a_given_type_must_be_a_bare_attachable_mime_type(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        content_type_for("x.txt", given)


# -- check_content_id --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param("logo", "logo", id="plain"),
        pytest.param("<logo>", "logo", id="brackets-removed"),
        pytest.param(" <logo@example.com> ", "logo@example.com", id="with-domain"),
        pytest.param("part1.abc-DEF_9", "part1.abc-DEF_9", id="dots-dashes"),
    ],
)
def test_a_content_id_is_kept_without_its_brackets(given: str, kept: str) -> None:
    assert check_content_id(given) == kept


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("", id="empty"),
        pytest.param("<>", id="empty-brackets"),
        pytest.param("lo go", id="space"),
        pytest.param("logo\r\nBcc: x@example.com", id="crlf"),
        pytest.param("<<logo>>", id="double-brackets"),
        pytest.param("a@b@c", id="two-ats"),
        pytest.param("logo@", id="empty-domain"),
        pytest.param("lögo", id="non-ascii"),
        pytest.param("x" * 201, id="too-long"),
        pytest.param('lo"go', id="quote"),
        pytest.param("logo\u0085", id="trailing-next-line"),
        pytest.param("logo\n", id="trailing-line-feed"),
    ],
)
def test_a_content_id_must_be_a_simple_id(given: str) -> None:
    with pytest.raises(ValueError, match="simple id"):
        check_content_id(given)


def test_an_attachment_measures_its_bytes_and_the_limit_on_how_many_is_20() -> None:
    assert Attachment("a.bin", "application/octet-stream", b"\x00" * 7).size == 7
    assert Attachment("empty.txt", "text/plain", b"").size == 0
    assert MAX_ATTACHMENTS == 20


# -- build_message: structure ------------------------------------------------------------------


LOGO = Attachment("logo.png", "image/png", png_bytes(), "logo")
REPORT = Attachment("report.pdf", "application/pdf", PDF)
DATA = Attachment("data.bin", "application/octet-stream", awkward_bytes(20_000))


def test_a_text_email_with_a_file_is_mixed_text_then_file() -> None:
    message = _build([REPORT], text_body="See attached.", html_body=None)
    assert _tree(message) == ("multipart/mixed", ["text/plain", "application/pdf"])
    part = _by_filename(message, "report.pdf")
    assert part.get_content_disposition() == "attachment"
    assert _bytes(part) == PDF
    assert "Content-ID" not in part
    assert message.get_body(preferencelist=("plain",)) is not None


def test_an_inline_image_without_html_is_attached_as_a_file_with_its_content_id() -> None:
    message = _build([LOGO], text_body="No HTML here.", html_body=None)
    assert _tree(message) == ("multipart/mixed", ["text/plain", "image/png"])
    part = _by_filename(message, "logo.png")
    assert part.get_content_disposition() == "attachment"
    assert part["Content-ID"] == "<logo>"
    assert _bytes(part) == LOGO.content


def test_an_html_email_with_an_inline_image_is_related() -> None:
    message = _build([LOGO], text_body=None, html_body=HTML)
    assert _tree(message) == ("multipart/related", ["text/html", "image/png"])
    part = _by_filename(message, "logo.png")
    assert part.get_content_disposition() == "inline"
    assert part["Content-ID"] == "<logo>"
    assert _bytes(part) == LOGO.content


def test_html_with_an_inline_image_and_a_file_is_mixed_related_then_file() -> None:
    message = _build([REPORT, LOGO], text_body=None, html_body=HTML)
    assert _tree(message) == (
        "multipart/mixed",
        [("multipart/related", ["text/html", "image/png"]), "application/pdf"],
    )


def test_text_html_inline_image_and_files_make_the_structure_every_client_renders() -> None:
    message = _build([DATA, LOGO, REPORT], text_body="Plain", html_body=HTML)
    assert _tree(message) == (
        "multipart/mixed",
        [
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
            "application/octet-stream",
            "application/pdf",
        ],
    )
    html = message.get_body(preferencelist=("html",))
    assert isinstance(html, EmailMessage)
    assert "cid:logo" in html.get_content()
    assert _by_filename(message, "logo.png").get_content_disposition() == "inline"
    for attachment in (DATA, REPORT):
        part = _by_filename(message, attachment.filename)
        assert part.get_content_disposition() == "attachment"
        assert part.get_content_type() == attachment.content_type
        assert _bytes(part) == attachment.content
    # What a mail client lists as attachments: the files, not the inline image.
    listed = [p.get_filename() for p in message.iter_attachments()]
    assert listed == ["data.bin", "report.pdf"]


def test_text_and_html_with_files_only_keep_the_alternative_whole() -> None:
    message = _build([REPORT], text_body="Plain", html_body="<p>Rich</p>")
    assert _tree(message) == (
        "multipart/mixed",
        [("multipart/alternative", ["text/plain", "text/html"]), "application/pdf"],
    )


def test_files_and_inline_images_keep_their_order() -> None:
    files = [Attachment(f"f{n}.txt", "text/plain", f"file {n}".encode()) for n in range(5)]
    images = [
        Attachment(f"i{n}.png", "image/png", png_bytes() + bytes([n]), f"img{n}") for n in range(3)
    ]
    given = [files[0], images[0], files[1], images[1], files[2], files[3], images[2], files[4]]
    message = _build(given, text_body=None, html_body='<img src="cid:img0">')
    leaves = [p for p in _leaves(message) if p.get_filename()]
    assert [p.get_filename() for p in leaves if p["Content-ID"]] == ["i0.png", "i1.png", "i2.png"]
    assert [p.get_filename() for p in leaves if not p["Content-ID"]] == [f.filename for f in files]
    assert [p["Content-ID"] for p in leaves if p["Content-ID"]] == ["<img0>", "<img1>", "<img2>"]
    for attachment in given:
        assert _bytes(_by_filename(message, attachment.filename)) == attachment.content


def test_no_attachments_builds_the_message_as_before() -> None:
    assert _tree(_build([], text_body="Plain", html_body=None)) == "text/plain"
    assert _tree(_build([], text_body="Plain", html_body="<p>Rich</p>")) == (
        "multipart/alternative",
        ["text/plain", "text/html"],
    )


# -- build_message: bytes, names and the wire ---------------------------------------------------


@pytest.mark.parametrize(
    "attachment",
    [
        pytest.param(
            Attachment("data.bin", "application/octet-stream", awkward_bytes()), id="awkward-300k"
        ),
        pytest.param(Attachment("empty.bin", "application/octet-stream", b""), id="empty"),
        pytest.param(Attachment("one.bin", "application/octet-stream", b"\x00"), id="one-nul"),
        pytest.param(
            Attachment("latin1.txt", "text/plain", "caf\u00e9\r\n.dot\nlone LF".encode("latin-1")),
            id="text-not-utf8",
        ),
        pytest.param(
            Attachment("page.html", "text/html", b"<script>x</script>\r\n"), id="html-file"
        ),
        pytest.param(Attachment("dots.txt", "text/plain", b".\r\n.\n..\r\n."), id="only-dots"),
    ],
)
def test_every_byte_of_an_attachment_survives(attachment: Attachment) -> None:
    message = _build([attachment], text_body="See attached.")
    part = _by_filename(message, attachment.filename)
    assert part.get_content_type() == attachment.content_type
    assert part["Content-Transfer-Encoding"] == "base64"
    assert _bytes(part) == attachment.content


@pytest.mark.parametrize(
    "filename",
    [
        pytest.param('a "quoted"; name=x.pdf', id="quotes-and-semicolon"),
        pytest.param("r\u00e9sum\u00e9 \u00fcn\u00efcode.pdf", id="non-ascii"),
        pytest.param("日本語のファイル.txt", id="non-latin"),
        pytest.param("long " + "x" * 200 + ".pdf", id="longer-than-a-line"),
        pytest.param("r\u00e9sum\u00e9 " + "\u00e9" * 120 + ".pdf", id="long-non-ascii"),
        pytest.param("with  two  spaces.pdf", id="spaces"),
        pytest.param("percent%20and'apostrophe.pdf", id="percent-apostrophe"),
    ],
)
def test_the_filename_reaches_the_recipient_as_given(filename: str) -> None:
    attachment = Attachment(filename, "application/pdf", PDF)
    message = _build([attachment], text_body="See attached.")
    [part] = list(message.iter_attachments())
    assert isinstance(part, EmailMessage)
    assert part.get_filename() == filename
    assert _bytes(part) == PDF


def test_the_message_is_crlf_ascii_and_within_line_limits() -> None:
    raw = build_message(
        _email(text_body="Plain", html_body=HTML),
        [DATA, LOGO, Attachment("r\u00e9sum\u00e9 " + "x" * 150 + ".pdf", "application/pdf", PDF)],
    )
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert not any(b"\n" in line or b"\r" in line for line in lines), "bare CR or LF on the wire"
    assert max(len(line) for line in lines) <= 998  # RFC 5322
    body_start = raw.index(b"\r\n\r\n")
    headers = raw[:body_start].decode()
    assert "Message-ID: <attachments-test@example.com>" in headers
    assert "MIME-Version: 1.0" in headers


def test_every_build_carries_the_same_bytes_and_headers() -> None:
    email = _email(text_body="Plain", html_body=HTML)
    first = message_from_bytes(build_message(email, [DATA, LOGO]), policy=policy.default)
    second = message_from_bytes(build_message(email, [DATA, LOGO]), policy=policy.default)
    for name in ("Message-ID", "Date", "Subject", "From", "To"):
        assert first[name] == second[name]
    for a, b in zip(_leaves(first), _leaves(second), strict=True):
        assert a.get_content_type() == b.get_content_type()
        assert a.get_payload(decode=True) == b.get_payload(decode=True)


@pytest.mark.parametrize("filename", ["forwarded.eml", "page.mht", "page.mhtml", "post.nws"])
def test_a_file_whose_type_is_guessed_arrives_intact(filename: str) -> None:
    content = b"From: a@example.com\r\nSubject: forwarded\r\n\r\nThe original.\r\n"
    attachment = Attachment(filename, content_type_for(filename, None), content)
    message = _build([attachment], text_body="See attached.")
    [part] = list(message.iter_attachments())
    assert isinstance(part, EmailMessage)
    assert part.get_filename() == filename
    assert part.get_payload(decode=True) == content


# -- RFC 2047 encoded-words: refused on the way in, and again when the message is built ---------

# Python's email package decodes an encoded-word when it writes the header (CR/LF
# included, before CVE-2024-6923's fix): "=?utf-8?q?..=2F..=2Fetc=2Fpasswd?=" would reach
# the recipient as "../../etc/passwd", and =0D=0A would inject a header line.
ENCODED_WORDS = [
    pytest.param("=?utf-8?q?..=2F..=2Fetc=2Fpasswd?=", id="q-path-traversal"),
    pytest.param("=?utf-8?b?Li4vLi4vZXRjL3Bhc3N3ZA==?=", id="b-path-traversal"),
    pytest.param("=?utf-8?q?a=0D=0AX-Injected:=20yes?=.pdf", id="q-crlf-header"),
    pytest.param("=?utf-8?q?evil=E2=80=AEfdp.exe?=", id="q-right-to-left-override"),
    pytest.param("=?utf-8?q?x=00y?=.txt", id="q-nul"),
]


@pytest.mark.parametrize("given", ENCODED_WORDS)
def test_an_encoded_word_in_a_filename_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="encoded-word"):
        safe_filename(given)
    # Even if one were stored (say, before this check existed), it is never written.
    with pytest.raises(ValueError, match="encoded-word"):
        _build([Attachment(given, "application/pdf", PDF)], text_body="See attached.")


@pytest.mark.parametrize("html_body", [HTML, None], ids=["inline-related", "attached-file"])
def test_an_encoded_word_in_a_content_id_is_refused(html_body: str | None) -> None:
    given = "=?utf-8?q?a=0D=0AX-Injected=3A=20yes?="
    with pytest.raises(ValueError, match="simple id"):
        check_content_id(given)
    with pytest.raises(ValueError, match="encoded-word"):
        _build([Attachment("logo.png", "image/png", png_bytes(), given)], html_body=html_body)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"subject": "=?utf-8?q?Hi=0D=0ABcc:=20evil@example.com?="}, id="subject"),
        pytest.param(
            {"headers": {"X-Campaign": "=?utf-8?q?v=0D=0ABcc:=20evil@example.com?="}},
            id="header-value",
        ),
        pytest.param({"to": '"=?utf-8?q?a=0D=0ABcc:=20x?=" <jane@example.com>'}, id="display-name"),
    ],
)
def test_an_encoded_word_in_a_subject_header_or_name_is_refused(fields: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from mailroom.emails.schemas.requests import SendEmailRequest

    with pytest.raises(ValidationError, match="encoded-word"):
        SendEmailRequest.model_validate(
            {"to": "jane@example.com", "subject": "Hi", "text": "Hello", **fields}
        )
    if "to" not in fields:
        with pytest.raises(ValueError, match="encoded-word"):
            _build([], **fields)


def test_text_with_an_opening_but_no_closing_marker_is_kept() -> None:
    assert safe_filename("price=?yes?.txt") == "price=?yes?.txt"
    message = _build([], subject="Is 2+2=? 4, yes")
    assert message["Subject"] == "Is 2+2=? 4, yes"


def test_an_encoded_word_with_whitespace_inside_is_refused_too() -> None:
    # Some interpreters decode "=?utf-8?q?…?=" with spaces inside; any "=?" … "?=" is refused.
    with pytest.raises(ValueError, match="encoded-word"):
        safe_filename("=?utf-8?q?a=0D=0AX-Evil:=201 b.pdf?=")
    with pytest.raises(ValueError, match="encoded-word"):
        _build([], subject="Is 2+2=? 4 ?= yes")
