"""Outbound mail transports: how a built message leaves Mailroom.

``MailTransport`` (base) is the whole interface the worker depends on.

smtp              ``SmtpTransport``: a real server over a pool of reused connections
smtp_connect      opening one: greeting, EHLO, STARTTLS, AUTH
smtp_transaction  one MAIL…DATA (pipelined when offered) and what each reply means
smtp_wire         replies in, commands out, timeouts, dot-stuffing
replies           reply classes, enhanced codes, retry hints
sandbox           sandbox keys' emails: logged as sent, never delivered
memory            messages kept in memory with scripted replies, for tests
"""

from mailroom.transport.base import (
    Envelope,
    MailTransport,
    Outcome,
    RecipientRefusal,
    SendResult,
    Stage,
)

__all__ = ["Envelope", "MailTransport", "Outcome", "RecipientRefusal", "SendResult", "Stage"]
