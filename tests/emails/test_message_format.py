"""How a message is written: 7-bit bodies, literal ASCII headers, identical bytes every time."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.emails.attachments import Attachment
from mailroom.emails.message import build_message
from mailroom.emails.message_format import fold_at_whitespace, text_transfer_encoding
from tests.emails.test_message import make_email, parse

# A real one-click unsubscribe header (RFC 8058), 169 characters with its name.
LIST_UNSUBSCRIBE = (
    "<https://news.example.com/u/a3f9c2d1e8b7a6f5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9?list=weekly>, "
    "<mailto:unsubscribe@news.example.com?subject=unsub-a3f9c2d1>"
)


def header_lines(raw: bytes, name: str) -> list[bytes]:
    """The lines of header ``name`` as written (its first line and continuations)."""
    head = raw.partition(b"\r\n\r\n")[0]
    pattern = rb"^" + name.encode() + rb": [^\r\n]*(?:\r\n[ \t][^\r\n]*)*"
    match = re.search(pattern, head, re.MULTILINE)
    assert match is not None, f"{name} is missing"
    return match.group(0).split(b"\r\n")


def unfolded(lines: list[bytes], name: str) -> str:
    return b"".join(lines).decode().removeprefix(f"{name}: ")


# -- headers -----------------------------------------------------------------------------


def test_a_long_list_unsubscribe_stays_literal() -> None:
    assert len(f"List-Unsubscribe: {LIST_UNSUBSCRIBE}") == 169
    raw = build_message(make_email(headers={"List-Unsubscribe": LIST_UNSUBSCRIBE}))
    lines = header_lines(raw, "List-Unsubscribe")
    assert b"=?" not in b"".join(lines)  # no RFC 2047 encoded-word
    assert all(len(line) <= 998 for line in lines)
    assert unfolded(lines, "List-Unsubscribe") == LIST_UNSUBSCRIBE
    assert parse(raw)["List-Unsubscribe"] == LIST_UNSUBSCRIBE


def test_a_long_ascii_subject_is_folded_at_its_spaces_only() -> None:
    subject = "Your order " + "with-a-very-long-reference-" * 4 + " has shipped, " * 6
    raw = build_message(make_email(subject=subject))
    lines = header_lines(raw, "Subject")
    assert len(lines) > 1
    assert b"=?" not in b"".join(lines)
    assert all(line.startswith((b" ", b"\t")) for line in lines[1:])
    assert unfolded(lines, "Subject") == subject


def test_non_ascii_text_is_still_encoded() -> None:
    raw = build_message(make_email(subject="Grüße aus Köln"))
    assert b"Subject: =?utf-8?" in raw
    assert parse(raw)["Subject"] == "Grüße aus Köln"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "X: short\r\n"),
        ("a b", "X: a b\r\n"),
        ("aaaa bbbb cccc", "X: aaaa\r\n bbbb cccc\r\n"),  # lines of at most 10
        ("aaaa  bbbb", "X: aaaa\r\n  bbbb\r\n"),
        ("aaaaaaaaaaaaaaaa b", "X: aaaaaaaaaaaaaaaa\r\n b\r\n"),
        ("aaaa bbbb   ", "X: aaaa\r\n bbbb   \r\n"),  # no line of whitespace alone
    ],
)
def test_fold_at_whitespace(value: str, expected: str) -> None:
    assert fold_at_whitespace("X", value, 10) == expected


def test_a_word_longer_than_998_cannot_be_written_literally() -> None:
    assert fold_at_whitespace("X", "a" * 995, 78) == f"X: {'a' * 995}\r\n"  # 998: fits
    assert fold_at_whitespace("X", "a" * 996, 78) is None


@given(
    st.lists(st.text(alphabet="abc<>:/?=.@-", min_size=1, max_size=120), min_size=1, max_size=12),
    st.lists(st.sampled_from([" ", "  ", "\t", " \t"]), min_size=11, max_size=11),
)
def test_folding_unfolds_to_the_same_value(words: list[str], spaces: list[str]) -> None:
    value = "".join(w + s for w, s in zip(words, spaces, strict=False)).rstrip(" \t")
    folded = fold_at_whitespace("List-Id", value, 78)
    assert folded is not None
    assert folded.replace("\r\n", "").removeprefix("List-Id: ") + "\r\n" == value + "\r\n"
    assert all(line.strip(" \t") for line in folded.split("\r\n")[:-1])


# -- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Thanks for your order.\n", "7bit"),
        ("x" * 998 + "\n", "7bit"),  # RFC 5322 allows lines of 998
        ("x" * 999 + "\n", "quoted-printable"),
        ("Grüße aus Köln, und danke für die Bestellung.\n", "quoted-printable"),
        ("Здравствуйте, спасибо за заказ.\n", "base64"),  # mostly 8-bit octets
        ("ご注文ありがとうございます。\n", "base64"),
    ],
)
def test_text_transfer_encoding(text: str, encoding: str) -> None:
    assert text_transfer_encoding(text) == encoding


def test_every_body_is_7_bit() -> None:
    email = make_email(
        subject="Grüße",
        text_body="Grüße aus Köln.\n.Punkt\n",
        html_body="<p>Grüße aus <b>Köln</b> — ご注文</p>",
    )
    attachments = [
        Attachment(filename="größe.txt", content_type="text/plain", content="ä".encode())
    ]
    raw = build_message(email, attachments)
    assert raw.isascii()
    assert b"Content-Transfer-Encoding: 8bit" not in raw
    message = parse(raw)
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == "Grüße aus Köln.\n.Punkt\n"
    assert "ご注文" in html.get_content()
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "größe.txt"
    assert attachment.get_payload(decode=True) == "ä".encode()


# -- the same bytes on every attempt --------------------------------------------------------------


def test_every_build_gives_the_same_bytes() -> None:
    email = make_email(html_body="<p>Thanks</p>")
    attachments = [
        Attachment(filename="receipt.pdf", content_type="application/pdf", content=b"%PDF-1"),
        Attachment(
            filename="logo.png", content_type="image/png", content=b"\x89PNG", content_id="logo"
        ),
    ]
    first, second = build_message(email, attachments), build_message(email, attachments)
    assert first == second
    assert parse(first).get_content_type() == "multipart/mixed"


def test_a_boundary_found_in_the_content_is_replaced_by_the_next_one() -> None:
    email = make_email(html_body="<p>Thanks</p>")
    ordinary = parse(build_message(email)).get_boundary()
    assert ordinary is not None
    # A text that contains the boundary Mailroom would pick for it.
    tricky = make_email(text_body=f"--{ordinary}\nsneaky\n", html_body="<p>Thanks</p>")
    raw = build_message(tricky)
    boundary = parse(raw).get_boundary()
    assert boundary is not None and boundary != ordinary
    assert raw == build_message(tricky)
    assert parse(raw).get_body(("plain",)) is not None
