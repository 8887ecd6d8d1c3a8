"""Text bound for a message header: what is refused, and the proof that each header builds.

Two locks, both applied when an email is accepted (so a value that the worker could not
write, or would write differently, is a ``422`` and never a failure after the ``202``):

1. Rules on the text (``header_safe``, ``readable``): no control characters, Unicode line
   separators or lone surrogates (they would end the line, or cannot be encoded), and no
   RFC 2047 encoded-word syntax. Python's email package decodes ``=?charset?q?…?=`` while it
   parses a header value, CR/LF included, and how leniently depends on the interpreter
   (words with whitespace inside decode on some 3.11 and 3.12 releases, in file names on
   all of them): a caller never needs to send one, as Mailroom encodes non-ASCII text
   itself, so any ``=?…?=`` is refused, whitespace inside or not. Subjects and display
   names also refuse bidirectional overrides and invisible characters, which disguise what
   the recipient reads (``"\\u202egnp.exe"`` shows as ``exe.png``).
2. The build (``built``): the header is made by the same header classes ``EmailMessage``
   uses in the worker (``email.policy.SMTP``), and refused unless it reads back exactly as
   given, without defects, and folds into proper continuation lines.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from email import errors, policy
from email.headerregistry import AddressHeader, BaseHeader
from email.message import EmailMessage

POLICY = policy.SMTP
# Messages to an internationalized address carry UTF-8 headers (RFC 6532), as the worker
# writes them; only there may an address header hold a non-ASCII local part.
UTF8_POLICY = POLICY.clone(utf8=True)

# Cc (C0, DEL, C1: U+0085 NEL among them), the Unicode line and paragraph separators, and
# lone surrogates (JSON can carry "\ud800"; no encoder can write it).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Any "=?" followed later by "?=": every encoded-word any decoder accepts, and more.
_ENCODED_WORD = re.compile(r"=\?.*?\?=", re.DOTALL)
# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), and
# characters that show as nothing: soft hyphen, Hangul fillers, Mongolian vowel separator,
# zero-width space, word joiner and invisible operators, deprecated format characters, BOM,
# interlinear annotation marks. Direction *marks* (LRM, RLM, ALM) stay: mixed
# right-to-left text needs them.
_INVISIBLE = re.compile(
    "[\u00ad\u115f\u1160\u180e\u200b\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\u3164\ufeff\uffa0\ufff9-\ufffb]"
)
# Zero-width (non-)joiners are needed inside emoji sequences and Persian or Indic words,
# never next to ASCII (where they only split a word such as a brand name) or doubled.
_JOINER = re.compile("(?:^|[\x00-\x7f\u200c\u200d])[\u200c\u200d]|[\u200c\u200d](?:$|[\x00-\x7f])")


def control_character(value: str) -> str | None:
    """The first character that must never reach a header, or None."""
    found = _FORBIDDEN.search(value)
    return None if found is None else found.group()


def reject_control_characters(value: str) -> str:
    char = control_character(value)
    if char is not None:
        if "\ud800" <= char <= "\udfff":
            raise ValueError(f"must not contain a lone surrogate (found U+{ord(char):04X})")
        raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
    return value


def header_safe(value: str) -> str:
    """Text that may go into a header: no control characters, no encoded-words."""
    reject_control_characters(value)
    if _ENCODED_WORD.search(value):
        raise ValueError(
            "must not contain RFC 2047 encoded-word syntax ('=?' … '?='): send the text "
            "itself, Mailroom encodes it"
        )
    return value


def readable(value: str) -> str:
    """Text a person reads as a sender or subject: no direction overrides, nothing invisible."""
    found = _INVISIBLE.search(value)
    char = None if found is None else found.group()
    if char is None and (joiner := _JOINER.search(value)) is not None:
        char = next(c for c in joiner.group() if c in "\u200c\u200d")
    if char is not None:
        raise ValueError(
            f"must not contain invisible or direction-changing characters (found U+{ord(char):04X})"
        )
    return value


def _plain(value: str) -> bool:
    # Printable ASCII without "=?": the parser has nothing to decode and the folder only
    # splits at spaces, so the header is the text itself (tests/test_headers.py shows it).
    return value.isascii() and value.isprintable() and "=?" not in value


def built(name: str, value: str) -> str:
    """``value`` once header ``name`` has been built from it and checked; ValueError if it
    would not be written as given."""
    if _plain(value):
        return value
    return _built(name, value)


@functools.lru_cache(maxsize=4096)
def _built(name: str, value: str) -> str:
    header = _parse(name, value)
    if str(header) != value:
        raise ValueError("would not be written as given")
    return value


def mailbox_built(value: str, *, display_name: str, addr_spec: str) -> str:
    """An address header of one mailbox, checked to hold exactly that name and address."""
    if not display_name and _plain(value):
        return value
    return _mailbox_built(value, display_name, addr_spec)


@functools.lru_cache(maxsize=4096)
def _mailbox_built(value: str, display_name: str, addr_spec: str) -> str:
    chosen = POLICY if addr_spec.isascii() else UTF8_POLICY
    header = _written(lambda: chosen.header_factory("To", value), chosen)
    assert isinstance(header, AddressHeader)
    found = [(a.display_name, a.addr_spec) for a in header.addresses]
    if found != [(display_name, addr_spec)]:
        raise ValueError("would not be written as given")
    return value


def _parse(name: str, value: str) -> BaseHeader:
    """The header as EmailMessage builds it, refused if it has defects or folds badly."""
    return _written(lambda: POLICY.header_factory(name, value))


def _written(
    make: Callable[[], BaseHeader], chosen: policy.EmailPolicy[EmailMessage] = POLICY
) -> BaseHeader:
    try:
        header = make()
        folded = header.fold(policy=chosen)
    except Exception as exc:  # noqa: BLE001 - any failure to build is a refusal
        reason = type(exc).__name__
        raise ValueError(f"cannot be written into a message header ({reason})") from None
    defects = [
        d
        for d in header.defects
        # A UTF-8 local part is what an RFC 6532 header is for.
        if not (chosen.utf8 and isinstance(d, errors.NonASCIILocalPartDefect))
    ]
    if defects:
        raise ValueError(f"cannot be written into a message header ({defects[0]})")
    # What CPython's verify_generated_headers checks (3.13+): every line after the first
    # is a continuation, so nothing the value holds can start a header of its own.
    lines = folded.split(POLICY.linesep)
    if (
        lines[-1] != ""
        or any("\r" in line or "\n" in line for line in lines)
        or any(not line or line[0] not in " \t" for line in lines[1:-1])
    ):
        raise ValueError("would not fold into one header")
    # And what a receiver reads from the folded lines is what was built: CPython's folder
    # drops the quotes of a display name it has to split ("a, b …" <x@y> becomes two
    # addresses), so a value that folds differently is refused rather than sent so.
    name, _, written = "".join(lines).partition(":")
    if _meaning(POLICY.header_factory(name, written.strip(" \t"))) != _meaning(header):
        raise ValueError("would not be written as given (too long to fold; shorten it)")
    return header


def _meaning(header: BaseHeader) -> object:
    # Whitespace aside: folding may change it, and CPython's parser reads adjacent
    # encoded-words in a display name with a space between them, which RFC 2047 drops.
    def words(text: str) -> str:
        return "".join(text.split())

    if isinstance(header, AddressHeader):
        return [(words(a.display_name), a.addr_spec) for a in header.addresses]
    params = getattr(header, "params", None)
    if params is not None:
        return {key: words(str(value)) for key, value in params.items()}
    return words(str(header))


@functools.lru_cache(maxsize=1024)
def filename_built(filename: str) -> str:
    """A file name, checked to come back unchanged from the Content-Disposition header the
    worker writes (an RFC 2231 parameter, quoted or encoded)."""
    part = EmailMessage(policy=POLICY)

    def disposition() -> BaseHeader:
        part["Content-Disposition"] = "attachment"
        part.set_param("filename", filename, header="Content-Disposition")
        header: BaseHeader = part["Content-Disposition"]
        return header

    _written(disposition)
    if part.get_filename() != filename:
        raise ValueError("would not be written as given")
    return filename
