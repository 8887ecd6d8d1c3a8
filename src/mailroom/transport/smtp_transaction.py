"""One MAIL…DATA transaction over an open connection: what each reply means for the delivery.

With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write and the body
in a second: two round trips per email instead of 3 + recipients. The replies are still
read one by one, in order, so each is attributed to its stage exactly as in a
command-by-command conversation, which is what servers without PIPELINING get.

Only a 2xx to the final dot makes an email ``accepted``; a 250 where 354 was due means
the server took nothing, however friendly it sounds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailroom.transport.base import Envelope, Outcome, RecipientRefusal, SendResult, Stage
from mailroom.transport.replies import (
    accepted,
    classify_refusals,
    refusal,
    reply_result,
    retry_after_hint,
    unexpected_reply,
)
from mailroom.transport.smtp_wire import (
    ConnectionLost,
    SmtpConnection,
    canonical_lines,
    dot_stuff,
)

# Anything that could end or extend a command line. Non-ASCII is allowed: it needs
# SMTPUTF8, which the transaction asks for (or refuses without).
_UNSAFE_ADDRESS = re.compile(r"[\s<>\x00-\x1f\x7f-\x9f]")
# "Service not available, closing transmission channel": no more replies will come,
# so none are waited for (RFC 5321 §3.8).
CLOSING = 421
# The faults that end a connection; anything else is a bug and propagates.
FAULTS = (ConnectionLost, TimeoutError, OSError)


class Stale(Exception):
    """A pooled connection turned out to be dead before the server took anything."""


@dataclass(frozen=True)
class Commands:
    """An envelope turned into command lines once, before it waits for a connection."""

    mail: bytes  # "MAIL FROM:<…>" without its CRLF, so parameters can follow
    rcpts: tuple[bytes, ...]
    body: bytes  # dot-stuffed, with the final dot
    size: int  # octets as SIZE counts them (RFC 1870): CRLF lines, no stuffing, no dot
    eight_bit: bool
    smtputf8: bool  # an address or a header is UTF-8 (RFC 6531)
    utf8_address: str | None  # the first address that needs SMTPUTF8, for the error


def to_commands(envelope: Envelope) -> Commands | SendResult:
    """The envelope as command lines, or why it cannot be sent at all."""
    addresses = (envelope.sender, *envelope.recipients)
    for address in addresses:
        if _UNSAFE_ADDRESS.search(address):
            return SendResult(
                outcome=Outcome.PERMANENT,
                code=None,
                message=f"{address!r} cannot be written on an SMTP command line",
            )
    if not envelope.recipients:
        return SendResult(outcome=Outcome.PERMANENT, code=None, message="no recipients")
    message = canonical_lines(envelope.message)
    eight_bit = not message.isascii()
    utf8_address = next((a for a in addresses if not a.isascii()), None)
    headers = message.partition(b"\r\n\r\n")[0] if eight_bit else b""
    return Commands(
        mail=b"MAIL FROM:<" + envelope.sender.encode() + b">",
        rcpts=tuple(b"RCPT TO:<" + r.encode() + b">\r\n" for r in envelope.recipients),
        body=dot_stuff(message),
        size=len(message),
        eight_bit=eight_bit,
        smtputf8=utf8_address is not None or not headers.isascii(),
        utf8_address=utf8_address,
    )


def refused_before_mail(commands: Commands, extensions: dict[str, str]) -> SendResult | None:
    """Why this server cannot take this message, known from its EHLO alone; or None."""
    if commands.smtputf8 and "SMTPUTF8" not in extensions:
        needs = (
            f"the address {commands.utf8_address!r}"
            if commands.utf8_address
            else "a header with UTF-8 text"
        )
        return _local(
            "smtputf8_not_supported",
            f"{needs} needs SMTPUTF8 (RFC 6531), which the server does not offer",
            "5.6.7",
        )
    if commands.eight_bit and "8BITMIME" not in extensions:
        return _local(
            "8bitmime_not_supported",
            "the message has 8-bit content and the server does not offer 8BITMIME",
            "5.6.3",
        )
    limit = _size_limit(extensions)
    if limit and commands.size > limit:
        return _local(
            "message_too_large",
            f"the message is {commands.size:,} bytes; the server accepts at most {limit:,} "
            "(its SIZE)",
            "5.3.4",
        )
    return None


def mail_command(commands: Commands, extensions: dict[str, str]) -> bytes:
    """MAIL FROM with the parameters this server understands and this message needs."""
    mail = commands.mail
    if "SIZE" in extensions:
        mail += b" SIZE=%d" % commands.size
    if commands.eight_bit:
        mail += b" BODY=8BITMIME"
    if commands.smtputf8:
        mail += b" SMTPUTF8"
    return mail + b"\r\n"


async def transact(
    connection: SmtpConnection,
    commands: Commands,
    recipients: tuple[str, ...],
    *,
    pooled: bool,
    pipelining: bool = True,
    data_timeout: float = 600.0,
    after: asyncio.Future[bool] | None = None,
    uploaded: Callable[[], None] | None = None,
) -> tuple[SendResult, bool]:
    """One MAIL…DATA transaction; returns the result and whether the connection may be reused.

    Raises Stale when a pooled connection died (or went silent) before the server
    answered MAIL. The body goes out at the pace the server reads it, no stall longer
    than the connection's timeout; its final reply may take up to ``data_timeout``.

    ``after``: the connection was handed over (smtp_slots) while the message ahead still
    awaits its final reply; this transaction's commands go out at once, and its replies
    are read once ``after`` says the connection is still in step. ``uploaded`` is called
    once the body has left, while the final reply is still to come.
    """
    extensions = connection.extensions
    refused_here = refused_before_mail(commands, extensions)
    if refused_here is not None:
        # Nothing was said: the connection is as the transaction ahead left it.
        return refused_here, True if after is None else await asyncio.shield(after)
    mail = mail_command(commands, extensions)
    pipelining = pipelining and "PIPELINING" in extensions
    stage = Stage.MAIL
    body_sent = False
    try:
        try:
            if pipelining:
                connection.write(b"".join((mail, *commands.rcpts, b"DATA\r\n")))
            else:
                connection.write(mail)
            # Shielded: a cancelled send must not cancel the turn the sender ahead will give.
            if after is not None and not await asyncio.shield(after):
                raise Stale  # the message ahead left the connection unusable
            code, text = await connection.reply()
        except (ConnectionLost, TimeoutError):
            # Dropped by a NAT or a firewall without a word, or closed while idle:
            # nothing was handed over, so this is no failed attempt.
            if pooled:
                raise Stale from None
            raise
        if not 200 <= code < 300:
            if code == CLOSING:
                if pooled:
                    raise Stale  # the idle-timeout notice crossed our MAIL
                return reply_result(code, text, Stage.MAIL), False
            # A pipelined RCPT and DATA are still owed replies (503s, normally).
            owed = len(commands.rcpts) + 1 if pipelining else 0
            return reply_result(code, text, Stage.MAIL), await _abandon(connection, owed)

        stage = Stage.RCPT
        refused: list[RecipientRefusal] = []
        for recipient, line in zip(recipients, commands.rcpts, strict=True):
            if not pipelining:
                connection.write(line)
            code, text = await connection.reply()
            if code == CLOSING:
                # Not about this recipient: the server is going away mid-transaction.
                return reply_result(code, text, Stage.RCPT), False
            if not 200 <= code < 300:
                refused.append(refusal(recipient, code, text))
        if len(refused) == len(recipients):
            first = refused[0]
            result = SendResult(
                outcome=classify_refusals(tuple(refused)),
                code=first.code,
                enhanced_code=first.enhanced_code,
                message=first.message,
                stage=Stage.RCPT,
                refused=tuple(refused),
                retry_after=retry_after_hint(first.message),
            )
            return result, await _abandon(connection, 1 if pipelining else 0)

        stage = Stage.DATA
        if not pipelining:
            connection.write(b"DATA\r\n")
        code, text = await connection.reply()
        if code != 354:
            if 200 <= code < 300:
                # It did not ask for the message, so it has none: out of step with us.
                result = unexpected_reply(code, text, Stage.DATA, command="DATA", expected="354")
                return result, False
            keep = code != CLOSING and await _abandon(connection, 0)
            return reply_result(code, text, Stage.DATA), keep
        await connection.upload(commands.body, connection.timeout)
        body_sent = True
        if uploaded is not None:
            uploaded()
        code, text = await connection.reply(within=data_timeout)
    except FAULTS as exc:
        # Until the final dot has left Mailroom nothing was handed over, so a retry is
        # safe; once it has, the server may hold the message even if we never hear so.
        outcome = Outcome.UNKNOWN if body_sent else Outcome.TRANSIENT
        text = str(exc) or type(exc).__name__
        return SendResult(outcome=outcome, code=None, message=text, stage=stage), False
    if not 200 <= code < 300:
        # The final reply ends the transaction either way (RFC 5321 §4.1.1.4): no RSET.
        # After a 421 the server is closing: the connection goes with it.
        return reply_result(code, text, Stage.DATA), code != CLOSING
    return accepted(code, text, tuple(refused)), True


async def _abandon(connection: SmtpConnection, owed: int) -> bool:
    """Close a refused transaction so the connection can carry the next; False if it can't.

    ``owed`` is how many pipelined replies are still to come, the last one DATA's.
    """
    try:
        for remaining in range(owed, 0, -1):
            code, _ = await connection.reply()
            if remaining == 1 and code == 354:
                # Some servers start DATA with no valid recipient; a lone dot ends
                # it without content, and the server has no one to deliver it to.
                connection.write(b".\r\n")
                await connection.reply()
        connection.write(b"RSET\r\n")
        code, _ = await connection.reply()
    except FAULTS:
        return False
    return code == 250


def _size_limit(extensions: dict[str, str]) -> int:
    """The server's SIZE limit in octets; 0 when it states none (RFC 1870 §4)."""
    value = extensions.get("SIZE", "").strip()
    return int(value) if value.isdigit() else 0


def _local(reason: str, explanation: str, enhanced: str) -> SendResult:
    """A permanent refusal decided here, before MAIL; ``reason`` opens the message."""
    return SendResult(
        outcome=Outcome.PERMANENT,
        code=None,
        enhanced_code=enhanced,
        message=f"{reason}: {explanation}",
        stage=Stage.MAIL,
    )
