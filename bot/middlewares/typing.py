"""The typing indicator: kept up while an answer is produced (a command, or the model), on platforms whose
adapter declares ``capabilities.typing``. A streamed answer ends it sooner, once its first message is on
screen (``Turn.stop_typing``). Typing is best effort: an adapter failing to show it changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from bot.middleware import Handler, Turn
from bot.ports import ChatAdapter

REFRESH_S = 4.0  # platforms show "typing" for about five seconds


class Typing:
    def __init__(self, adapters: Mapping[str, ChatAdapter], refresh_s: float = REFRESH_S) -> None:
        self._adapters = adapters
        self._refresh_s = refresh_s

    async def __call__(self, turn: Turn, call_next: Handler[Turn]) -> None:
        chat = turn.message.chat
        adapter = self._adapters.get(chat.platform)
        if adapter is None or not adapter.capabilities.typing:
            await call_next(turn)
            return

        async def keep_typing() -> None:
            while True:
                with contextlib.suppress(Exception):
                    await adapter.typing(chat)
                await asyncio.sleep(self._refresh_s)

        task = asyncio.create_task(keep_typing(), name=f"typing:{chat.key}")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        turn.stop_typing = stop
        try:
            await call_next(turn)
        finally:
            await stop()
