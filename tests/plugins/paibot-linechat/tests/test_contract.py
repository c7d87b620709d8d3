"""paibot's adapter contract suite, run against this adapter (a member's client over real loopback TCP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.ports import AdapterEnv
from bot.testing.adapter_contract import AdapterContract, PlatformUnderTest
from paibot_linechat import LineChatSettings, plugin


class Member:
    """A client of the linechat server: writes a member's lines, reads every line of the room."""

    chat_id = "lobby"

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter
        self._seen: list[dict[str, Any]] = []
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def ready(self) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", self._adapter.port)
        self._reader_task = asyncio.create_task(self._read(reader), name="linechat-member")
        await self.post("joining")  # the server sends a room's messages to clients that wrote there

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self._seen.append(json.loads(line))

    async def post(self, text: str) -> None:
        assert self._writer is not None
        self._writer.write(
            json.dumps({"chat": self.chat_id, "user": "7", "name": "Ann", "text": text}).encode() + b"\n"
        )
        await self._writer.drain()

    async def bot_texts(self) -> list[str]:
        return [m["text"] for m in self._seen if m.get("type") == "message" and m["is_bot"]]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)


class TestLineChatAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, tmp_path: Path) -> AsyncIterator[PlatformUnderTest]:
        adapter = plugin.create(
            LineChatSettings(enabled=True, port=0), AdapterEnv(bot_name="Pai", data_dir=tmp_path)
        )
        member = Member(adapter)
        yield PlatformUnderTest(adapter, member)
        await member.close()
