"""Parsing and validating addresses and header-bound text.

Hand-written "Name <addr>" split (email-validator checks the address itself): its own
display-name parser refuses names people send, unquoted non-ASCII ("Jürgen Müller <…>"),
an unquoted period ("J. Doe <…>") and spaces inside the brackets ("Jane < a@b.com >").

Anything that ends up in a message header goes through here, and anything that
could add a header (CR, LF, NUL, other control characters, Unicode line
separators) is refused before a message is ever built.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from email.headerregistry import Address

from email_validator import EmailNotValidError, validate_email

# "Display Name <local@domain>" or a bare "local@domain".
_NAME_ADDR = re.compile(
    r'^\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<plain>[^"<>]*?))\s*<(?P<addr>[^<>]*)>\s*$'
)
_LINE_SEPARATORS = frozenset("\u2028\u2029\u0085")
MAX_ADDRESS_LENGTH = 320
MAX_DISPLAY_NAME_LENGTH = 200


def control_character(value: str) -> str | None:
    """The first character that must never reach a header, or None."""
    for char in value:
        if char in _LINE_SEPARATORS or unicodedata.category(char) == "Cc":
            return char
    return None


def reject_control_characters(value: str) -> str:
    char = control_character(value)
    if char is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
    return value


# An RFC 2047 encoded-word. Python's email package decodes these when it writes a
# header (before CVE-2024-6923's fix, CR/LF included): "=?utf-8?q?a=0D=0ABcc:=20x?="
# would become a second header line. Mailroom encodes non-ASCII text itself, so a
# caller never needs to send one.
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[^?\s]*\?[^?\s]*\?=")


def header_safe(value: str) -> str:
    """Text that may go into a header: no control characters, no encoded-words."""
    reject_control_characters(value)
    if _ENCODED_WORD.search(value):
        raise ValueError(
            "must not contain an RFC 2047 encoded-word (=?charset?…?=): send the text "
            "itself, Mailroom encodes it"
        )
    return value


@dataclass(frozen=True)
class Mailbox:
    """A validated address: ``address`` goes on the envelope, ``header`` into the message."""

    address: str
    name: str = ""

    @property
    def header(self) -> str:
        if not self.name:
            return self.address
        local, _, domain = self.address.rpartition("@")
        return str(Address(display_name=self.name, username=local, domain=domain))


# Parsing costs ~30 µs (email-validator), and the same senders and recipients come back
# request after request; a Mailbox is immutable, so a parsed one can be shared. Invalid
# input raises every time (lru_cache does not cache exceptions).
@functools.lru_cache(maxsize=4096)
def parse_mailbox(value: str) -> Mailbox:
    """Parse ``a@b.com`` or ``Name <a@b.com>``; a ValueError says what is wrong with it."""
    if len(value) > MAX_ADDRESS_LENGTH + MAX_DISPLAY_NAME_LENGTH:
        raise ValueError("is too long")
    header_safe(value)
    name = ""
    addr = value.strip()
    match = _NAME_ADDR.match(value)
    if match is not None:
        quoted = match.group("quoted")
        name = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group("plain")
        name = name.strip()
        addr = match.group("addr").strip()
    elif "<" in value or ">" in value:
        raise ValueError(
            "is not a valid address: expected 'name@example.com' or 'Name <name@example.com>'"
        )
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise ValueError(f"has a display name longer than {MAX_DISPLAY_NAME_LENGTH} characters")
    if not addr:
        raise ValueError("is empty")
    try:
        # Syntax only: a DNS lookup has no place on the request path. Internationalized
        # local parts (jöhn@…) are allowed: they go out with SMTPUTF8 (RFC 6531), or fail
        # as smtputf8_not_supported when the server lacks it.
        checked = validate_email(addr, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(f"is not a valid address: {exc}") from None
    address = checked.ascii_email or checked.normalized
    if len(address) > MAX_ADDRESS_LENGTH:
        raise ValueError("is too long")
    return Mailbox(address=address, name=name)
