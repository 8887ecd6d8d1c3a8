"""The header rules, and the proof that each accepted header is written as given."""

from __future__ import annotations

import re
from email.headerregistry import Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.headers import (
    POLICY,
    built,
    control_character,
    header_safe,
    mailbox_built,
    readable,
    reject_control_characters,
)

# -- control characters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("plain text", None),
        ("", None),
        ("ümlaut \u2013 dash € emoji 🎉", None),
        ("a\rb", "\r"),
        ("a\nb", "\n"),
        ("a\x00b", "\x00"),
        ("tab\there", "\t"),
        ("x\u2028y", "\u2028"),
        ("x\u2029y", "\u2029"),
        ("x\u0085y", "\u0085"),
        ("x\x9fy", "\x9f"),
        ("first\x01then\n", "\x01"),
        ("first\u2028then\r", "\u2028"),
    ],
)
def test_control_character(value: str, found: str | None) -> None:
    assert control_character(value) == found


def test_reject_control_characters_returns_clean_value() -> None:
    assert reject_control_characters("Hello, world") == "Hello, world"


def test_reject_control_characters_names_the_code_point() -> None:
    with pytest.raises(
        ValueError, match=r"^must not contain control characters \(found U\+2028\)$"
    ):
        reject_control_characters("line\u2028break")


@given(st.text(alphabet=st.characters(categories=["Cc"]), min_size=1, max_size=5))
def test_any_cc_character_is_found(bad: str) -> None:
    assert control_character("ok" + bad + "ok") == bad[0]


def test_a_lone_surrogate_is_refused_by_name() -> None:
    assert control_character("a\udc00b") == "\udc00"
    with pytest.raises(ValueError, match=r"lone surrogate \(found U\+DC00\)"):
        reject_control_characters("a\udc00b")


# -- encoded-words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?Invoice=0D=0AReply-To:=20attacker@evil.example=0D=0A=0D=0APay to IBAN ?=",
        "=?utf-8?q?a=0D=0ABcc:=20x@evil.example?=",
        "Hello =?utf-8?b?DQpCY2M6IHhAZXZpbC5leGFtcGxl?= world",
        "=?utf-8 ?q?spaced charset?=",
        "=?utf-8?q?tab\tinside?=",
        "=??=",
        "prefix=?iso-8859-1?Q?caf=E9?=suffix",
    ],
)
def test_encoded_word_syntax_is_refused_with_or_without_whitespace(value: str) -> None:
    with pytest.raises(ValueError, match="encoded-word"):
        header_safe(value.replace("\t", " "))


@pytest.mark.parametrize("value", ["a = b ? c", "Why?=", "=?", "?= and =? reversed", "100% =)"])
def test_text_that_only_looks_close_is_accepted(value: str) -> None:
    assert header_safe(value) == value


# -- readable -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("invoice\u202egnp.exe", "U+202E"),
        ("a\u202ab", "U+202A"),
        ("a\u2067b", "U+2067"),
        ("Pay\u200bPal", "U+200B"),
        ("Pay\u2060Pal", "U+2060"),
        ("Pay\u200cPal", "U+200C"),
        ("\u200dstart", "U+200D"),
        ("end \U0001f469\u200d", "U+200D"),
        ("\U0001f469\u200d\u200d\U0001f4bb", "U+200D"),
        ("soft\u00adhyphen", "U+00AD"),
        ("\ufeffBOM", "U+FEFF"),
    ],
)
def test_invisible_and_direction_changing_characters_are_refused(value: str, code: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"(found {code})")):
        readable(value)


@pytest.mark.parametrize(
    "value",
    [
        "Plain subject",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family news",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "\u05e9\u05dc\u05d5\u05dd \u200f2024",
    ],
)
def test_text_people_write_is_readable(value: str) -> None:
    assert readable(value) == value


# -- built ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Your receipt",
        "Jürgen's Ärger — über €100",
        "日本語の件名です" * 30,
        "x" * 300,
        "  spaced   out  ",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family news",
    ],
)
def test_a_header_people_write_is_built_as_given(value: str) -> None:
    assert built("Subject", value) == value


def test_a_value_the_parser_would_decode_is_refused() -> None:
    # header_safe refuses it first in every request; this is the second lock.
    refused = r"^would not (be written as given|fold into one header)$"
    with pytest.raises(ValueError, match=refused):
        built("Subject", "=?utf-8?q?a=0D=0ABcc:=20x@evil.example?=")
    with pytest.raises(ValueError, match=refused):
        built("X-Note", "=?utf-8?q?a_b?= c")


def test_a_mailbox_header_must_hold_exactly_its_name_and_address() -> None:
    header = str(Address(display_name="Jürgen Müller", username="j", domain="example.com"))
    assert mailbox_built(header, display_name="Jürgen Müller", addr_spec="j@example.com")
    with pytest.raises(ValueError, match="would not be written as given"):
        mailbox_built(header, display_name="Someone Else", addr_spec="j@example.com")
    injected = '"=?utf-8?q?a=0D=0AX:=20y?=" <j@example.com>'
    with pytest.raises(ValueError, match=r"cannot be written|would not"):
        mailbox_built(injected, display_name="x", addr_spec="j@example.com")


_PLAIN = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).filter(
    lambda text: "=?" not in text
)


@given(_PLAIN)
def test_plain_ascii_is_built_unchanged_without_being_parsed(value: str) -> None:
    # built() skips the parser for printable ASCII without "=?": this shows that the
    # parser would have given the same text back, and folded it into continuation lines.
    header = POLICY.header_factory("Subject", value)
    assert str(header) == value
    assert not header.defects
    lines = header.fold(policy=POLICY).split("\r\n")
    assert lines[-1] == ""
    assert all(line[:1] in (" ", "\t") for line in lines[1:-1])


def test_a_display_name_the_folder_would_split_out_of_its_quotes_is_refused() -> None:
    # CPython folds this From header without the quotes: receivers would read the name's
    # punctuation as two more addresses, one of them victim@evil.example.
    name = "x" * 30 + ",;Bcc:victim@evil.example" + "x" * 30
    header = str(Address(display_name=name, username="sender", domain="example.com"))
    with pytest.raises(ValueError, match="too long to fold"):
        mailbox_built(header, display_name=name, addr_spec="sender@example.com")


def test_long_display_names_people_use_still_fold_as_given() -> None:
    for name, addr in [
        ("Müller, Hans-Jürgen (Vertrieb Süd)", "hans-juergen.mueller@example-company.de"),
        ("Doe, Jane (Accounting Department of Example Corporation)", "jane.doe@example.com"),
        ("日本語の名前" * 12, "tanaka@example.jp"),
    ]:
        local, _, domain = addr.rpartition("@")
        header = str(Address(display_name=name, username=local, domain=domain))
        assert mailbox_built(header, display_name=name, addr_spec=addr) == header
