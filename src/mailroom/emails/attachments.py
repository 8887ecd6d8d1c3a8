"""Attachments as the API takes them: decoded, named safely, typed, and measured.

Sizes are checked against the settings when the email is accepted (413 with the attachment
named); everything else about an attachment is checked here (422).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import unicodedata
from dataclasses import dataclass

from mailroom.headers import built, filename_built, header_safe

MAX_ATTACHMENTS = 20
MAX_FILENAME_LENGTH = 255
# type/subtype, RFC 6838 restricted names (no parameters: Mailroom writes those).
_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
# A Content-ID is a msg-id without its brackets; keep to a safe subset.
_CONTENT_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}(@[A-Za-z0-9.-]{1,200})?$")
# Types a mail client may run or that bypass filters when mislabelled; refused outright.
_REFUSED_TYPES = frozenset({"multipart", "message"})


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.content)


def decode_content(value: object) -> bytes:
    """Strict base64 (standard alphabet, padding required); raises ValueError otherwise."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None


def encode_content(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def safe_filename(value: str) -> str:
    """The name without directories or control characters; raises ValueError if nothing is left.

    A client's "../../etc/passwd" or "C:\\temp\\x.pdf" arrives as "passwd" and "x.pdf":
    the recipient's mail client decides where files go, never the sender.
    """
    name = unicodedata.normalize("NFC", value)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().strip(".").strip()
    header_safe(name)  # it goes into a Content-Disposition header
    if not name:
        raise ValueError(
            "must name a file (it is empty once directories and control characters are removed)"
        )
    if len(name) > MAX_FILENAME_LENGTH:
        raise ValueError(f"must be at most {MAX_FILENAME_LENGTH} characters")
    return filename_built(name)


def content_type_for(filename: str, given: str | None) -> str:
    """The given type, checked, or the one the file name suggests."""
    if given is None:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        # A name like x.eml suggests message/rfc822, which cannot be sent as a file's
        # bytes (RFC 2046 forbids base64 for it): send such files as plain bytes.
        if guessed is None or guessed.split("/", 1)[0] in _REFUSED_TYPES:
            return "application/octet-stream"
        return guessed
    value = given.strip().lower()
    if not _CONTENT_TYPE.fullmatch(value):
        raise ValueError("must be a MIME type such as application/pdf (without parameters)")
    if value.split("/", 1)[0] in _REFUSED_TYPES:
        raise ValueError(f"{value} cannot be attached as a file")
    return value


def check_content_id(value: str) -> str:
    # Spaces only: a trailing CR, LF or NEL is refused, not quietly dropped.
    value = value.strip(" ").removeprefix("<").removesuffix(">")
    if not _CONTENT_ID.fullmatch(value) or "=?" in value:
        raise ValueError("must be a simple id such as logo or logo@example.com")
    return built("Content-ID", f"<{value}>")[1:-1]
