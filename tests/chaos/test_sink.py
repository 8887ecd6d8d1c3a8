"""The chaos sink's late answer: the message is kept, the 250 comes after the client gave up.

This is what makes `smtp-late` a real duplicate risk: Mailroom's own SMTP client sees no
answer (`unknown`) while the server already holds the message.
"""

from __future__ import annotations

import io
from email.message import EmailMessage

from chaos.sink import SinkHandler

from mailroom.devinbox.server import start_smtp_server
from mailroom.transport.base import Envelope, Outcome
from mailroom.transport.smtp import SmtpConfig, SmtpTransport


def _message(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = subject
    message["Message-ID"] = "<late-1@example.com>"
    message.set_content("hi")
    return bytes(message)


async def test_a_late_message_is_kept_though_the_client_timed_out() -> None:
    record = io.StringIO()
    handler = SinkHandler(
        record,
        fail_first=0,
        code=451,
        fail_marker=None,
        reject_code=550,
        reject_marker=None,
        delay=0.0,
        late_marker="chaos-late",
        late_first=1,
        late_delay=2.0,
    )
    server = await start_smtp_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = SmtpTransport(
        SmtpConfig(host="127.0.0.1", port=port, timeout=0.5, data_timeout=0.5, pool_size=1)
    )
    try:
        envelope = Envelope("a@example.com", ("b@example.com",), _message("chaos-late 0"))
        first = await transport.send(envelope)
        assert first.outcome is Outcome.UNKNOWN  # no answer in time: maybe delivered
        assert record.getvalue() == "<late-1@example.com>\n"  # and it was
        second = await transport.send(envelope)  # the retry: answered at once
        assert second.outcome is Outcome.ACCEPTED
        assert record.getvalue().count("<late-1@example.com>") == 2  # the duplicate
    finally:
        await transport.aclose()
        server.close()
