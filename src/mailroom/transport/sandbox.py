"""The transport for sandbox emails: accepts every message and sends none of them.

A customer's CI pipeline can then exercise Mailroom end to end (stored, queued,
claimed, attempted, logged as `sent`) without a single message leaving it.
"""

from __future__ import annotations

from mailroom.transport.base import Envelope, Outcome, SendResult

SANDBOX_REPLY = "Sandbox: accepted and logged; no SMTP connection was made."


class SandboxTransport:
    def __init__(self) -> None:
        self.accepted = 0  # how many messages it took (for tests and curiosity)

    async def send(self, envelope: Envelope) -> SendResult:
        self.accepted += 1
        return SendResult(outcome=Outcome.ACCEPTED, code=250, message=SANDBOX_REPLY, elapsed=0.0)

    async def aclose(self) -> None:
        return None
