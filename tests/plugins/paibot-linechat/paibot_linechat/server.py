"""The linechat server: each TCP connection is a member's client; one JSON object per line each way.

In: ``{"chat": "lobby", "user": "7", "name": "Ann", "text": "hi", "reply_to": "3"?}``. Out, to every
connection that has written to that chat: ``{"type": "message", "chat", "id", "user", "name", "is_bot",
"text", "reply_to"}`` for every message there (the member's own included, so clients see the ids), or
``{"type": "error", "error": "..."}`` for a line that is not a valid message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from datetime import datetime, timezone
from typing import Any

from bot.events import ChatRef, Message, Outgoing, PersonRef, ReplyRef, SentRef
from bot.ports import AdapterEnv, Capabilities, IntakeSink
from paibot_linechat import LineChatSettings

log = logging.getLogger("paibot_linechat")
PLATFORM = "linechat"
MAX_LINE = 64 * 1024


class LineChatAdapter:
    name = PLATFORM

    def __init__(self, cfg: LineChatSettings, env: AdapterEnv) -> None:
        self._cfg = cfg
        self._bot_name = env.bot_name
        self.capabilities = Capabilities(max_text_length=cfg.max_text_length)
        self._server: asyncio.Server | None = None
        self._sink: IntakeSink | None = None
        self._rooms: dict[str, set[asyncio.StreamWriter]] = {}
        self._ids = itertools.count(1)
        self._clients: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, sink: IntakeSink) -> None:
        self._sink = sink
        self._server = await asyncio.start_server(self._serve, self._cfg.host, self._cfg.port, limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("linechat: listening on %s:%d", self._cfg.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writers in self._rooms.values():
            for w in writers:
                w.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        with contextlib.suppress(Exception):
            await server.wait_closed()
        self._rooms.clear()

    async def send(self, out: Outgoing) -> SentRef:
        ids = []
        for part in split(out.text, self.capabilities.max_text_length):
            mid = str(next(self._ids))
            ids.append(mid)
            await self._broadcast(
                out.chat.chat_id,
                {
                    "type": "message",
                    "chat": out.chat.chat_id,
                    "id": mid,
                    "user": "bot",
                    "name": self._bot_name,
                    "is_bot": True,
                    "text": part,
                    "reply_to": out.reply_to,
                },
            )
        return SentRef(out.chat, ids[0], part_ids=tuple(ids))

    async def edit(self, ref: SentRef, text: str) -> None:  # capabilities.edit is off
        raise NotImplementedError

    async def typing(self, chat: ChatRef) -> None:
        return None

    # ----------------------------------------------------------------- connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while line := await reader.readline():
                try:
                    data = json.loads(line)
                    chat, user, text = str(data["chat"]), str(data["user"]), str(data["text"])
                except (ValueError, KeyError, TypeError) as exc:  # a bad line is answered, never fatal
                    await self._write(writer, {"type": "error", "error": f"not a message: {exc}"})
                    continue
                self._rooms.setdefault(chat, set()).add(writer)
                await self._receive(chat, user, str(data.get("name") or user), text, data.get("reply_to"))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            for writers in self._rooms.values():
                writers.discard(writer)
            writer.close()
            self._clients.discard(task)

    async def _receive(self, chat: str, user: str, name: str, text: str, reply_to: Any) -> None:
        mid = str(next(self._ids))
        msg = Message(
            id=mid,
            event_id=f"{PLATFORM}:{chat}:{mid}",
            chat=ChatRef(PLATFORM, chat, title=chat),
            author=PersonRef(PLATFORM, user, name),
            text=text,
            sent_at=datetime.now(timezone.utc),
            reply_to=ReplyRef(str(reply_to)) if reply_to else None,
            mentions_me=self._bot_name.lower() in text.lower(),
        )
        assert self._sink is not None
        await self._sink.submit([msg])  # committed before anyone sees it: the durable inbox has it
        await self._broadcast(
            chat,
            {
                "type": "message",
                "chat": chat,
                "id": mid,
                "user": user,
                "name": name,
                "is_bot": False,
                "text": text,
                "reply_to": reply_to,
            },
        )

    async def _broadcast(self, chat: str, data: dict[str, Any]) -> None:
        for writer in list(self._rooms.get(chat, ())):
            with contextlib.suppress(ConnectionError):
                await self._write(writer, data)

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
        writer.write(json.dumps(data, ensure_ascii=False).encode() + b"\n")
        await writer.drain()


def split(text: str, limit: int) -> list[str]:
    """Parts of at most ``limit`` characters, cut at spaces where possible."""
    parts: list[str] = []
    rest = text or " "
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip(" ")
    parts.append(rest)
    return parts
