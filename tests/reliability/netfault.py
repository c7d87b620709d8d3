"""A TCP path between the bot and a platform server that the test can break and heal.

``FlakyLink`` listens on its own port and forwards every connection to the real (fake) platform server.
``break_()`` cuts every open connection and from then on accepts and immediately resets new ones (like a
load balancer whose backend is gone), counting each attempt with its time; ``heal()`` forwards again on
the same port. The bot is configured with the link's address, so it sees a platform that went away and
came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class FlakyLink:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.broken = False
        self.attempts_while_broken: list[float] = []  # monotonic times of connections refused
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> FlakyLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        await self.break_()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def break_(self) -> None:
        self.broken = True
        for w in list(self._pipes):
            w.transport.abort()
        self._pipes.clear()

    def heal(self) -> None:
        self.broken = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.broken:
            self.attempts_while_broken.append(time.monotonic())
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._pipes.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
