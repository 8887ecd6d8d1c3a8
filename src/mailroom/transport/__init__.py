"""Outbound mail transports: how a built message leaves Mailroom.

``MailTransport`` is the whole interface the worker depends on. ``SmtpTransport``
talks to a real server over pooled connections; ``MemoryTransport`` keeps messages
in memory and answers with scripted replies, for unit tests.
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
