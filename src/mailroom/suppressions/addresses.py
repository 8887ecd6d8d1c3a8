"""How an address is matched against the suppression list.

The local part is matched exactly and the domain without regard to case: RFC 5321 lets
a receiving system treat ``Jane`` and ``jane`` as different mailboxes (a few do), while a
domain is never case-sensitive. Suppressing ``Jane@Example.com`` therefore suppresses
``Jane@example.com`` and not ``jane@example.com``. The key stored (and uniquely indexed)
is the address with its domain lower-cased.
"""

from __future__ import annotations

MAX_ADDRESS_LENGTH = 320


def normalize(address: str) -> str:
    """The list's key for ``address``; ValueError says why it is not an address."""
    value = address.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{address[:80]!r} is not an email address (name@domain)")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"is longer than {MAX_ADDRESS_LENGTH} characters")
    quoted = local.startswith('"') and local.endswith('"') and len(local) > 1
    if any(c.isspace() or ord(c) < 32 or c in "<>," for c in value) or (
        "@" in local and not quoted
    ):
        raise ValueError(f"{address[:80]!r} is not a single bare address")
    return f"{local}@{domain.lower()}"
