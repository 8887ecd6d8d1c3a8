"""Parsing mailboxes and refusing anything that could smuggle a header."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.addresses import (
    MAX_ADDRESS_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    Mailbox,
    parse_mailbox,
)

# -- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@example.com", Mailbox("a@example.com")),
        ("  a@example.com  ", Mailbox("a@example.com")),
        ("first.last+tag@sub.example.co.uk", Mailbox("first.last+tag@sub.example.co.uk")),
        ("Jane Doe <jane@example.com>", Mailbox("jane@example.com", "Jane Doe")),
        ("  Jane Doe   <jane@example.com>  ", Mailbox("jane@example.com", "Jane Doe")),
        ("Jane Doe<jane@example.com>", Mailbox("jane@example.com", "Jane Doe")),
        ('"Doe, Jane" <jane@example.com>', Mailbox("jane@example.com", "Doe, Jane")),
        ('"Jane \\"JD\\" Doe" <jane@example.com>', Mailbox("jane@example.com", 'Jane "JD" Doe')),
        ("<jane@example.com>", Mailbox("jane@example.com")),
        ("Jane < jane@example.com >", Mailbox("jane@example.com", "Jane")),
        ("Jürgen Müller <jm@example.de>", Mailbox("jm@example.de", "Jürgen Müller")),
        # The domain is normalised to lower case; the local part is kept as given.
        ("Jane.Doe@Example.COM", Mailbox("Jane.Doe@example.com")),
    ],
)
def test_parse_mailbox_accepts(value: str, expected: Mailbox) -> None:
    assert parse_mailbox(value) == expected


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("Bücherwurm <user@bücher.de>", "user@xn--bcher-kva.de"),
        ("info@münchen.example.com", "info@xn--mnchen-3ya.example.com"),
    ],
)
def test_idn_domain_becomes_punycode(value: str, address: str) -> None:
    mailbox = parse_mailbox(value)
    assert mailbox.address == address
    assert mailbox.address.isascii()


# -- refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "<>",
        "Jane <>",
        "example.com",
        "Jane Doe",
        "a@@example.com",
        "a@b@example.com",
        "a b@example.com",
        "@example.com",
        "a@",
        "a@example",
        "a@localhost",
        "a@example.test",
        "a@mail.invalid",
        "a@printer.local",
        "a@hidden.onion",
        "a@1.in-addr.arpa",
        "jö hn@example.com",
        "jöhn@localhost",
        "Jane <jane@example.com",
        "Jane jane@example.com>",
        "<<jane@example.com>>",
        "Jane <jane@example.com> trailing",
        "Jane <jane@example.com>, Bob <bob@example.com>",
        '"Unterminated <jane@example.com>',
    ],
)
def test_parse_mailbox_refuses(value: str) -> None:
    with pytest.raises(ValueError, match=r"^(is not a valid address|is empty|is too long)"):
        parse_mailbox(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is empty"),
        ("<>", "is empty"),
        ("Jane <jane@example.com", "is not a valid address: expected 'name@example.com'"),
        ("a@example.test", "special-use or reserved name"),
    ],
)
def test_refusal_messages(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mailbox(value)


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\r", "U+000D"),
        ("\n", "U+000A"),
        ("\x00", "U+0000"),
        ("\t", "U+0009"),
        ("\x1b", "U+001B"),
        ("\x7f", "U+007F"),
        ("\u0085", "U+0085"),
        ("\u2028", "U+2028"),
        ("\u2029", "U+2029"),
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        "a{c}@example.com",
        "a@example.com{c}",
        "Jane{c}Doe <jane@example.com>",
        "Jane <jane@example.com>{c}Bcc: victim@example.com",
        '"Jane{c}" <jane@example.com>',
    ],
)
def test_control_characters_are_refused(char: str, code: str, template: str) -> None:
    expected = f"must not contain control characters (found {code})"
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_mailbox(template.format(c=char))


def test_header_injection_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        parse_mailbox("jane@example.com\r\nBcc: everyone@example.com")


def test_over_long_input_is_refused_before_parsing() -> None:
    value = "x" * (MAX_ADDRESS_LENGTH + MAX_DISPLAY_NAME_LENGTH - 15) + " <a@example.com>"
    assert len(value) > MAX_ADDRESS_LENGTH + MAX_DISPLAY_NAME_LENGTH
    with pytest.raises(ValueError, match=r"^is too long$"):
        parse_mailbox(value)


def test_over_long_display_name_is_refused() -> None:
    value = "n" * (MAX_DISPLAY_NAME_LENGTH + 1) + " <a@example.com>"
    with pytest.raises(ValueError, match="display name longer than 200 characters"):
        parse_mailbox(value)


def test_display_name_at_the_limit_is_accepted() -> None:
    name = "n" * MAX_DISPLAY_NAME_LENGTH
    assert parse_mailbox(f"{name} <a@example.com>") == Mailbox("a@example.com", name)


def test_over_long_address_is_refused() -> None:
    # 64-character local part and a 250-character domain: over the 254-character limit.
    domain = ".".join(["d" * 60] * 4) + ".com"
    with pytest.raises(ValueError, match="is not a valid address"):
        parse_mailbox("l" * 64 + "@" + domain)


# -- Mailbox.header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mailbox", "header"),
    [
        (Mailbox("a@example.com"), "a@example.com"),
        (Mailbox("jane@example.com", "Jane Doe"), "Jane Doe <jane@example.com>"),
        (Mailbox("jane@example.com", "Doe, Jane"), '"Doe, Jane" <jane@example.com>'),
        (Mailbox("jane@example.com", "J. Doe"), '"J. Doe" <jane@example.com>'),
        (Mailbox("jane@example.com", 'Jane "JD" Doe'), '"Jane \\"JD\\" Doe" <jane@example.com>'),
        (Mailbox("jane@example.com", "Jane <x>"), '"Jane <x>" <jane@example.com>'),
    ],
)
def test_mailbox_header(mailbox: Mailbox, header: str) -> None:
    assert mailbox.header == header


@pytest.mark.parametrize(
    "value",
    [
        "a@example.com",
        "Jane Doe <jane@example.com>",
        '"Doe, Jane" <jane@example.com>',
        '"Jane \\"JD\\" Doe" <jane@example.com>',
        '"Smith; John (Ops)" <john@example.com>',
    ],
)
def test_header_parses_back_to_the_same_mailbox(value: str) -> None:
    mailbox = parse_mailbox(value)
    assert parse_mailbox(mailbox.header) == mailbox


@given(
    name=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        min_size=1,
        max_size=40,
    ).filter(lambda s: s.strip() == s and s != "" and "=?" not in s)
)
def test_any_printable_ascii_name_round_trips_through_header(name: str) -> None:
    mailbox = Mailbox("jane@example.com", name)
    assert parse_mailbox(mailbox.header) == mailbox


# -- encoded-words, invisible characters and long local parts -----------------------------

ENCODED_WORDS = [
    pytest.param("=?utf-8?q?Eve=0D=0ABcc:=20victim@evil.example?=", id="q"),
    pytest.param("=?utf-8?q?Eve=0D=0ABcc:=20victim@evil.example x?=", id="q-with-space"),
    pytest.param("=?utf-8?b?RXZlDQpCY2M6IHZpY3RpbUBldmlsLmV4YW1wbGU=?=", id="b"),
    pytest.param("=?utf-8 ?q?Eve?=", id="space-in-charset"),
    pytest.param("=?UTF-8?Q?Eve =0A?=", id="upper-case-space-inside"),
]


@pytest.mark.parametrize("word", ENCODED_WORDS)
@pytest.mark.parametrize(
    "template", ["{w} <jane@example.com>", '"{w}" <jane@example.com>', "Jane {w} <j@example.com>"]
)
def test_an_encoded_word_in_a_display_name_is_refused(word: str, template: str) -> None:
    with pytest.raises(ValueError, match="encoded-word"):
        parse_mailbox(template.format(w=word))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Pay\u202eLaP", id="right-to-left-override"),
        pytest.param("\u2066Bank\u2069", id="isolate"),
        pytest.param("Pay\u200bPal", id="zero-width-space"),
        pytest.param("Pay\u200dPal", id="zero-width-joiner-in-latin"),
        pytest.param("Pay\u00adPal", id="soft-hyphen"),
        pytest.param("\ufeffSupport", id="byte-order-mark"),
        pytest.param("\u3164", id="hangul-filler"),
    ],
)
def test_a_display_name_with_invisible_or_direction_changing_characters_is_refused(
    name: str,
) -> None:
    with pytest.raises(ValueError, match="invisible or direction-changing"):
        parse_mailbox(f"{name} <jane@example.com>")


@pytest.mark.parametrize(
    "name",
    [
        "\U0001f469\u200d\U0001f4bb Dev Team",  # an emoji sequence joined by ZWJ
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: ZWNJ inside a word
        "\u05e9\u05dc\u05d5\u05dd \u200f(Support)",  # an RLM in mixed-direction text
    ],
)
def test_joiners_and_direction_marks_that_scripts_need_are_accepted(name: str) -> None:
    assert parse_mailbox(f"{name} <jane@example.com>").name == name


def test_a_lone_surrogate_in_a_display_name_is_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        parse_mailbox("Jane\ud800 <jane@example.com>")


def test_a_local_part_of_64_octets_is_accepted_and_65_refused() -> None:
    assert parse_mailbox("l" * 64 + "@example.com").address == "l" * 64 + "@example.com"
    with pytest.raises(ValueError, match=r"65 octets before the @; at most 64"):
        parse_mailbox("l" * 65 + "@example.com")


def test_a_display_name_that_would_fold_into_more_addresses_is_refused() -> None:
    name = "x" * 30 + ",;Bcc:victim@evil.example" + "x" * 30
    with pytest.raises(ValueError, match="too long to fold"):
        parse_mailbox(f'"{name}" <sender@example.com>')


# -- internationalized addresses (SMTPUTF8) --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address", "header"),
    [
        ("jürgen@example.com", "jürgen@example.com", "jürgen@example.com"),
        ("用户@example.com", "用户@example.com", "用户@example.com"),
        ("Jöhn <jöhn@example.com>", "jöhn@example.com", "Jöhn <jöhn@example.com>"),
        # An internationalized domain alone needs no SMTPUTF8: it goes out as A-labels.
        ("jane@bücher.example", "jane@xn--bcher-kva.example", "jane@xn--bcher-kva.example"),
    ],
)
def test_internationalized_addresses_are_accepted(value: str, address: str, header: str) -> None:
    mailbox = parse_mailbox(value)
    assert (mailbox.address, mailbox.header) == (address, header)
