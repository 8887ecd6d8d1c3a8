"""One MAIL…DATA transaction over an open connection: what each reply means for the delivery.

With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write and the body
in a second: two round trips per email instead of 3 + recipients. The replies are still
read one by one, in order, so each is attributed to its stage exactly as in a
command-by-command conversation, which is what servers without PIPELINING get.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailroom.transport.base import Envelope, Outcome, RecipientRefusal, SendResult, Stage
from mailroom.transport.replies import (
    classify_refusals,
    refusal,
    reply_result,
    retry_after_hint,
    split_enhanced,
)
from mailroom.transport.smtp_wire import ConnectionLost, SmtpConnection, frame_message

# Anything that could end or extend a command line, or that needs SMTPUTF8, which
# address validation already refuses (so build_message never needs it either).
_UNSAFE_ADDRESS = re.compile(r"[^\x21-\x7e]|[<>]")
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
    body: bytes
    eight_bit: bool


def to_commands(envelope: Envelope) -> Commands | SendResult:
    """The envelope as command lines, or why it cannot be sent at all."""
    for address in (envelope.sender, *envelope.recipients):
        if _UNSAFE_ADDRESS.search(address):
            return SendResult(
                outcome=Outcome.PERMANENT,
                code=None,
                message=f"{address!r} cannot be written on an SMTP command line",
            )
    if not envelope.recipients:
        return SendResult(outcome=Outcome.PERMANENT, code=None, message="no recipients")
    message = envelope.message
    return Commands(
        mail=b"MAIL FROM:<" + envelope.sender.encode("ascii") + b">",
        rcpts=tuple(b"RCPT TO:<" + r.encode("ascii") + b">\r\n" for r in envelope.recipients),
        body=frame_message(message),
        # 8-bit bodies go out either way (servers take them); BODY=8BITMIME says so.
        eight_bit=not message.isascii(),
    )


async def transact(
    connection: SmtpConnection,
    commands: Commands,
    recipients: tuple[str, ...],
    *,
    pooled: bool,
) -> tuple[SendResult, bool]:
    """One MAIL…DATA transaction; returns the result and whether the connection may be reused.

    Raises Stale when a pooled connection died before the server answered MAIL.
    """
    extensions = connection.extensions
    mail = commands.mail
    if commands.eight_bit and "8BITMIME" in extensions:
        mail += b" BODY=8BITMIME"
    mail += b"\r\n"
    pipelining = "PIPELINING" in extensions
    stage = Stage.MAIL
    body_sent = False
    try:
        try:
            if pipelining:
                connection.write(b"".join((mail, *commands.rcpts, b"DATA\r\n")))
            else:
                connection.write(mail)
            code, text = await connection.reply()
        except ConnectionLost:
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
            keep = code != CLOSING and await _abandon(connection, 0)
            return reply_result(code, text, Stage.DATA), keep
        body_sent = True
        connection.write(commands.body)
        code, text = await connection.reply()
    except FAULTS as exc:
        # Before the body nothing was handed over, so a retry is safe; once it is
        # written the server may hold the message even if we never hear so.
        outcome = Outcome.UNKNOWN if body_sent else Outcome.TRANSIENT
        text = str(exc) or type(exc).__name__
        return SendResult(outcome=outcome, code=None, message=text, stage=stage), False
    if not 200 <= code < 300:
        # The final reply ends the transaction either way (RFC 5321 §4.1.1.4): no RSET.
        return reply_result(code, text, Stage.DATA), True
    enhanced, text = split_enhanced(text)
    result = SendResult(
        outcome=Outcome.ACCEPTED,
        code=code,
        enhanced_code=enhanced,
        message=text,
        stage=Stage.DATA,
        refused=tuple(refused),
    )
    return result, True


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
    return 200 <= code < 300
