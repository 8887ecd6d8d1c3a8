"""How a message is written out: 7-bit bodies, literal ASCII headers, the same bytes every time.

The message is built once per attempt, before a connection (and what its server offers)
is known, so it is written for any server:

- Bodies are 7-bit: ASCII text as it is (lines up to 998 octets, RFC 5322 §2.1.1), other
  text quoted-printable, or base64 when that is shorter (mostly non-Latin scripts).
  Attachments are base64. No server without 8BITMIME ever receives 8-bit bytes.
- An ASCII header stays literal and is folded only at its own whitespace, a line up to
  998 octets. The standard policy turns a word longer than 78 characters (a long URL in
  List-Unsubscribe, RFC 8058) into RFC 2047 encoded-words, which breaks one-click
  unsubscribe; only non-ASCII text is encoded.
- Multipart boundaries derive from the Message-ID instead of a random number, so every
  attempt sends identical bytes (a server that saw the first one recognises the retry).
"""

from __future__ import annotations

import hashlib
import re
from email.headerregistry import UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

_MAX_LINE = 998  # octets per line, CRLF aside (RFC 5322 §2.1.1)
# A header's words, each with the whitespace before it (folding happens only there).
_WORDS = re.compile(r"[ \t]*[^ \t]+|[ \t]+$")
_NOT_ASCII = bytes(range(128, 256))


class _Policy(EmailPolicy):
    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, UnstructuredHeader):
            text = str(value)
            if text.isascii():
                width = self.max_line_length or _MAX_LINE
                folded = fold_at_whitespace(name, text, width, self.linesep)
                if folded is not None:
                    return folded.encode("ascii")
        return super().fold_binary(name, value)


# policy.SMTP (CRLF, lines folded towards 78), writing 7-bit bodies; UTF8 for messages
# whose addresses need SMTPUTF8 (RFC 6532 headers in UTF-8).
POLICY = _Policy().clone(linesep="\r\n", cte_type="7bit")
UTF8_POLICY = POLICY.clone(utf8=True)


def fold_at_whitespace(name: str, value: str, width: int, linesep: str = "\r\n") -> str | None:
    """``Name: value`` folded before whitespace, lines towards ``width``; None if it can't be.

    Unfolding (removing each line break) gives the value back exactly. A word longer than
    ``width`` stays whole on its line; a line that would exceed 998 octets cannot be
    written literally (None: the caller encodes it instead).
    """
    words = _WORDS.findall(value)
    if not words:
        return None
    lines: list[str] = []
    line = f"{name}: " + words[0].lstrip(" \t")
    for word in words[1:]:
        # Never a continuation line of whitespace alone (RFC 5322 §3.2.2).
        if len(line) + len(word) > width and word.strip(" \t"):
            lines.append(line)
            line = word
        else:
            line += word
    lines.append(line)
    if any(len(line) > _MAX_LINE for line in lines):
        return None
    return linesep.join(lines) + linesep


def text_transfer_encoding(text: str) -> str:
    """7bit for ASCII text whose lines fit; quoted-printable or base64, whichever is shorter."""
    if text.isascii() and all(len(line) <= _MAX_LINE for line in text.splitlines()):
        return "7bit"
    data = text.encode()
    eight_bit = len(data) - len(data.translate(None, _NOT_ASCII))
    # Quoted-printable writes each 8-bit octet as three characters: Latin scripts stay
    # readable; for text mostly of 8-bit octets (Cyrillic, Greek, CJK) base64 is shorter.
    return "quoted-printable" if 3 * eight_bit <= len(data) else "base64"


def stable_bytes(message: EmailMessage, seed: str) -> bytes:
    """The message's bytes, with multipart boundaries derived from ``seed`` (its Message-ID).

    A boundary must not occur in the content it separates; should a derived one occur
    (a sender would have to guess it), the next candidate is taken: still the same bytes
    on every attempt.
    """
    multiparts = [part for part in message.walk() if part.is_multipart()]
    for salt in range(1000):
        boundaries = []
        for index, part in enumerate(multiparts):
            digest = hashlib.sha256(f"{seed}\0{salt}\0{index}".encode()).hexdigest()[:32]
            boundary = f"=_{digest}"
            part.set_boundary(boundary)
            boundaries.append((boundary.encode("ascii"), len(part.get_payload()) + 1))
        raw = message.as_bytes()
        if all(raw.count(b"--" + boundary) == uses for boundary, uses in boundaries):
            return raw
    raise ValueError("no multipart boundary could be found that the content does not contain")
