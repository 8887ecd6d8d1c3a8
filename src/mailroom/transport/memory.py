"""An in-memory transport: a real MailTransport for unit tests and sandboxes.

It keeps every envelope it is given and answers with scripted results in order,
then accepts everything once the script runs out.
"""

from __future__ import annotations

from collections import deque

from mailroom.transport.base import Envelope, Outcome, SendResult, Stage
from mailroom.transport.replies import accepted, reply_result


def reply(code: int, message: str = "", stage: Stage = Stage.DATA) -> SendResult:
    """The result a server reply at ``stage`` comes to, exactly as SmtpTransport reports it.

    At DATA it stands for the reply to the final dot, so a 2xx there is ``accepted``.
    """
    if 200 <= code < 300 and stage is Stage.DATA:
        return accepted(code, message)
    return reply_result(code, message, stage)


def connection_lost(
    stage: Stage = Stage.CONNECT, message: str = "Connection refused"
) -> SendResult:
    outcome = Outcome.UNKNOWN if stage is Stage.DATA else Outcome.TRANSIENT
    return SendResult(outcome=outcome, code=None, message=message, stage=stage)


class MemoryTransport:
    def __init__(self) -> None:
        self.attempts: list[Envelope] = []
        self.delivered: list[Envelope] = []
        self.closed = False
        self._script: deque[SendResult] = deque()

    def script(self, *results: SendResult) -> None:
        """Queue results for the next sends, in order."""
        self._script.extend(results)

    async def send(self, envelope: Envelope) -> SendResult:
        self.attempts.append(envelope)
        result = self._script.popleft() if self._script else reply(250, "2.0.0 OK queued")
        if result.outcome is Outcome.ACCEPTED:
            self.delivered.append(envelope)
        return result

    async def aclose(self) -> None:
        self.closed = True
