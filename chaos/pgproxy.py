"""A TCP proxy in front of PostgreSQL that the harness can cut and restore.

`python -m chaos.pgproxy --port P [--target-host H] [--target-port 5432]` forwards every
connection on 127.0.0.1:P to the target. SIGUSR1 cuts: it closes the listener and aborts every
open connection in both directions (so pooled connections break, as when the server goes away).
SIGUSR2 listens again on the same port. SIGTERM stops the proxy. Every change is logged to
stdout, one line each.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

CHUNK = 65536


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} pgproxy: {message}", flush=True)


class PgProxy:
    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        self.port = port
        self.target_host = target_host
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self.connections = 0

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )
            _say(f"listening on 127.0.0.1:{self.port} -> {self.target_host}:{self.target_port}")

    def cut(self) -> int:
        """Stop listening and abort every open connection; returns how many were aborted."""
        if self._server is not None:
            self._server.close()
            self._server = None
        aborted = len(self._transports)
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        _say(f"cut: listener closed, {aborted} transports aborted")
        return aborted

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before a cut
            client_w.transport.abort()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError as exc:
            _say(f"upstream connect failed: {exc}")
            client_w.transport.abort()
            return
        if self._server is None:  # cut while connecting upstream
            client_w.transport.abort()
            upstream_w.transport.abort()
            return
        self.connections += 1
        pair = (client_w.transport, upstream_w.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))
        finally:
            for transport in pair:
                self._transports.discard(transport)
                transport.abort()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy until EOF or an error, then abort the other side too."""
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()


async def serve(port: int, target_host: str, target_port: int) -> None:
    proxy = PgProxy(port, target_host, target_port)
    await proxy.listen()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    def restore() -> None:
        task = loop.create_task(proxy.listen())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGUSR1, proxy.cut)
    loop.add_signal_handler(signal.SIGUSR2, restore)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    proxy.cut()
    _say(f"stopped after {proxy.connections} connections")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.pgproxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, default=5432)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.target_host, args.target_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
