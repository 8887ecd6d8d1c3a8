"""Outbound mail transports: how a built message leaves Mailroom.

``MailTransport`` (base) is the whole interface the worker depends on.

smtp              ``SmtpTransport``: a real server over a pool of reused connections
smtp_slots        who sends next; a connection handed on before the final reply
smtp_config       what the client is told: server, security, credentials, timing
smtp_connect      opening one: TCP, TLS, greeting, EHLO, STARTTLS
smtp_auth         AUTH: PLAIN, LOGIN, XOAUTH2, the next mechanism after a refusal
oauth2            XOAUTH2 tokens from a token endpoint or a command
smtp_transaction  one MAIL…DATA (pipelined when offered) and what each reply means
smtp_wire         replies in, commands out, timeouts, the upload, dot-stuffing
replies           reply classes, enhanced codes, retry hints
from_settings     the worker's transport from the settings: SMTP_HOST's, or SMTP_PROVIDERS'
provider_config   SMTP_PROVIDERS: one URL per provider, read and checked
router            several providers: weighted choice, pacing, failover
provider_faults   whose fault an answer is: the provider's, a throttle, or the email's
provider_breaker  a circuit breaker per provider
pacing            rates and daily quotas shared through one Redis script
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
