"""Captured messages, in memory, newest first, bounded."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage


@dataclass(frozen=True)
class CapturedMessage:
    envelope_from: str
    envelope_to: tuple[str, ...]
    raw: bytes
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def parsed(self) -> EmailMessage:
        # SMTP carries CRLF line ends; Python's parser expects native ones.
        message = message_from_bytes(self.raw.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def summary(self) -> dict[str, object]:
        message = self.parsed()
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        return {
            "id": self.id,
            "receivedAt": self.received_at.isoformat(),
            "envelopeFrom": self.envelope_from,
            "envelopeTo": list(self.envelope_to),
            "messageId": message.get("Message-ID"),
            "from": message.get("From"),
            "to": message.get("To"),
            "cc": message.get("Cc"),
            "subject": message.get("Subject"),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "size": len(self.raw),
        }


class Inbox:
    def __init__(self, capacity: int = 1000) -> None:
        self._messages: deque[CapturedMessage] = deque(maxlen=capacity)

    def add(self, message: CapturedMessage) -> None:
        self._messages.appendleft(message)

    def __iter__(self) -> Iterator[CapturedMessage]:
        return iter(list(self._messages))

    def __len__(self) -> int:
        return len(self._messages)

    def clear(self) -> None:
        self._messages.clear()
