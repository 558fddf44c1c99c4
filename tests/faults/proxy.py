"""A TCP proxy that can go silent without closing: half-open sockets on demand.

`freeze()` stops forwarding on every connection open at that moment while
keeping its sockets open (the peer's kernel keeps acknowledging, nothing is
closed, nothing arrives); connections opened later are forwarded normally.
That is what a dead NAT entry or a frozen middlebox looks like to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class _Pair:
    frozen: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class Proxy:
    def __init__(self, target_host: str, target_port: int | None) -> None:
        """``target_port`` None means ``target_host`` is a Unix socket path."""
        self.target_host = target_host
        self.target_port = target_port
        self._pairs: list[_Pair] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="pgq-test-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target_port is None:
            return await asyncio.open_unix_connection(self.target_host)
        return await asyncio.open_connection(self.target_host, self.target_port)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        pair = _Pair()
        self._pairs.append(pair)
        try:
            server_reader, server_writer = await self._open_target()
        except OSError:
            client_writer.close()
            return
        pair.writers = [client_writer, server_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while not pair.frozen.is_set():
                    data = await reader.read(65536)
                    if not data or pair.frozen.is_set():
                        break
                    writer.write(data)
                    await writer.drain()
            if not pair.frozen.is_set():
                writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        if pair.frozen.is_set():
            # Half-open: hold both sockets, forward nothing, close nothing.
            await asyncio.Event().wait()

    def freeze(self) -> int:
        """Go silent on every open connection; returns how many."""

        def mark() -> int:
            for pair in self._pairs:
                pair.frozen.set()
            count = len(self._pairs)
            self._pairs = []
            return count

        return asyncio.run_coroutine_threadsafe(_call(mark), self._loop).result(10)

    def cut(self) -> int:
        """Break every open connection at once, both ways (a reset, no goodbye from the
        server): what a crashed middlebox or a killed server process looks like to the
        client. Connections opened later are forwarded normally. Returns how many."""

        def abort() -> int:
            for pair in self._pairs:
                for writer in pair.writers:
                    writer.transport.abort()
            count = len(self._pairs)
            self._pairs = []
            return count

        return asyncio.run_coroutine_threadsafe(_call(abort), self._loop).result(10)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def _call(fn):  # type: ignore[no-untyped-def]
    return fn()
