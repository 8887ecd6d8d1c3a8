"""An SMTP sink (aiosmtpd) run as its own process: `python -m chaos.sink --port P --record F`.

Every accepted message's Message-ID is appended to the record file, one per line, flushed
before the 250 is sent. DATA can be scripted: the first ``--fail-first`` transactions of
each Message-ID (only for subjects containing ``--fail-marker``, if given) get ``--code``;
subjects containing ``--reject-marker`` always get ``--reject-code``; ``--delay`` slows DATA.
The first ``--late-first`` transactions of a subject containing ``--late-marker`` are kept
(recorded) and answered 250 only after ``--late-delay`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_REPLY_TEXT = {
    421: "4.3.0 Try again later",
    450: "4.2.0 Mailbox busy",
    451: "4.3.0 Local error, try again",
    452: "4.3.1 Insufficient storage",
    550: "5.1.1 Mailbox unavailable",
    553: "5.1.3 Bad address",
    554: "5.7.1 Rejected",
}


class SinkHandler:
    def __init__(
        self,
        record: IO[str],
        *,
        fail_first: int,
        code: int,
        fail_marker: str | None,
        reject_code: int,
        reject_marker: str | None,
        delay: float,
        slow_marker: str | None = None,
        slow_first: int = 0,
        slow_delay: float = 0.0,
        late_marker: str | None = None,
        late_first: int = 0,
        late_delay: float = 0.0,
    ) -> None:
        self._record = record
        self._fail_first = fail_first
        self._code = code
        self._fail_marker = fail_marker
        self._reject_code = reject_code
        self._reject_marker = reject_marker
        self._delay = delay
        self._seen: Counter[str] = Counter()
        self._slow_marker = slow_marker
        self._slow_first = slow_first
        self._slow_delay = slow_delay
        self._slowed: Counter[str] = Counter()
        self._late_marker = late_marker
        self._late_first = late_first
        self._late_delay = late_delay
        self._late: Counter[str] = Counter()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else str(content).encode()
        headers = BytesHeaderParser().parsebytes(raw)
        message_id = str(headers.get("Message-ID", "")).strip()
        subject = str(headers.get("Subject", ""))
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._slow_marker and self._slow_marker in subject:
            self._slowed[message_id] += 1
            if self._slowed[message_id] <= self._slow_first:
                # Slower than the client's timeout: it has given up by the time this answers,
                # and the message is not kept (so a retry is the only delivery).
                await asyncio.sleep(self._slow_delay)
                return "451 4.4.2 Too slow, not kept"
        if self._reject_marker and self._reject_marker in subject:
            return _reply(self._reject_code)
        self._seen[message_id] += 1
        scripted = self._fail_marker is None or self._fail_marker in subject
        if scripted and self._seen[message_id] <= self._fail_first:
            return _reply(self._code)
        self._record.write(message_id + "\n")
        self._record.flush()
        if self._late_marker and self._late_marker in subject:
            self._late[message_id] += 1
            if self._late[message_id] <= self._late_first:
                # Kept (recorded above), but answered after the client's timeout: the
                # client cannot tell it from a lost message and sends it again.
                await asyncio.sleep(self._late_delay)
        return "250 2.0.0 OK queued"


def _reply(code: int) -> str:
    return f"{code} {_REPLY_TEXT.get(code, 'Scripted reply')}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True, help="Message-IDs, appended")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--code", type=int, default=451)
    parser.add_argument("--fail-marker", default=None)
    parser.add_argument("--reject-code", type=int, default=550)
    parser.add_argument("--reject-marker", default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--slow-marker", default=None)
    parser.add_argument("--slow-first", type=int, default=0)
    parser.add_argument("--slow-delay", type=float, default=0.0)
    parser.add_argument("--late-marker", default=None)
    parser.add_argument("--late-first", type=int, default=0)
    parser.add_argument("--late-delay", type=float, default=0.0)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with args.record.open("a", encoding="utf-8") as record:
        handler = SinkHandler(
            record,
            fail_first=args.fail_first,
            code=args.code,
            fail_marker=args.fail_marker,
            reject_code=args.reject_code,
            reject_marker=args.reject_marker,
            delay=args.delay,
            slow_marker=args.slow_marker,
            slow_first=args.slow_first,
            slow_delay=args.slow_delay,
            late_marker=args.late_marker,
            late_first=args.late_first,
            late_delay=args.late_delay,
        )
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="chaos-sink", data_size_limit=None),
            host=args.host,
            port=args.port,
        )
        print(f"sink listening on {args.host}:{args.port}", flush=True)
        await stop.wait()
        server.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
