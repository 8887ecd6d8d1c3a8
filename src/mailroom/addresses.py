"""Parsing and validating addresses: ``a@b.com`` or ``Name <a@b.com>``.

Hand-written "Name <addr>" split (email-validator checks the address itself): its own
display-name parser refuses names people send, unquoted non-ASCII ("Jürgen Müller <…>"),
an unquoted period ("J. Doe <…>") and spaces inside the brackets ("Jane < a@b.com >").

The whole value obeys the header rules (``mailroom.headers``), the display name is
readable (no direction overrides or invisible characters), and the address header is
built once here, so a mailbox that parses is one the worker can write.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from email.headerregistry import Address

from email_validator import EmailNotValidError, validate_email

from mailroom.headers import header_safe, mailbox_built, readable

# "Display Name <local@domain>" or a bare "local@domain".
_NAME_ADDR = re.compile(
    r'^\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<plain>[^"<>]*?))\s*<(?P<addr>[^<>]*)>\s*$'
)
MAX_ADDRESS_LENGTH = 320
MAX_DISPLAY_NAME_LENGTH = 200
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1; counted in UTF-8, as SMTPUTF8 sends it


@dataclass(frozen=True)
class Mailbox:
    """A validated address: ``address`` goes on the envelope, ``header`` into the message."""

    address: str
    name: str = ""

    @functools.cached_property
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
    try:
        readable(name)
    except ValueError as exc:
        raise ValueError(f"has a display name that {exc}") from None
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
    octets = len(checked.local_part.encode())
    if octets > MAX_LOCAL_PART_OCTETS:
        raise ValueError(
            f"has {octets} octets before the @; at most {MAX_LOCAL_PART_OCTETS} are allowed "
            "(RFC 5321)"
        )
    mailbox = Mailbox(address=address, name=name)
    try:
        mailbox_built(mailbox.header, display_name=name, addr_spec=address)
    except ValueError as exc:
        raise ValueError(f"{exc} in an address header") from None
    return mailbox
