"""An in-memory ``IntakeSink`` with the durable inbox's semantics, for adapter tests.

Events are deduplicated by ``event_id`` and committed together with their cursor, as the real inbox does
(``bot.state.StateDB``); ``wait_for`` waits on a condition (never a fixed sleep) for events to arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bot.events import Message


class MemoryInbox:
    def __init__(self) -> None:
        self.events: dict[str, Message] = {}
        self.order: list[str] = []
        self.cursors: dict[str, str] = {}
        self._changed = asyncio.Condition()

    async def submit(
        self, events: Sequence[Message], *, cursor_key: str | None = None, cursor: str | None = None
    ) -> int:
        new = 0
        async with self._changed:
            for ev in events:
                if ev.event_id not in self.events:
                    self.events[ev.event_id] = ev
                    self.order.append(ev.event_id)
                    new += 1
            if cursor_key is not None and cursor is not None:
                self.cursors[cursor_key] = cursor
            self._changed.notify_all()
        return new

    async def cursor(self, key: str) -> str | None:
        return self.cursors.get(key)

    async def seen(self, event_id: str) -> bool:
        return event_id in self.events

    def messages(self) -> list[Message]:
        """Every committed event, in commit order."""
        return [self.events[e] for e in self.order]

    async def wait_for(self, match: Callable[[Message], bool], timeout: float = 15.0) -> Message:
        """The first committed event ``match`` accepts, waiting up to ``timeout`` seconds for it."""

        async def first() -> Message:
            async with self._changed:
                while True:
                    found = next((m for m in self.messages() if match(m)), None)
                    if found is not None:
                        return found
                    await self._changed.wait()

        return await asyncio.wait_for(first(), timeout)


class MemoryKeyValueStore:
    """An in-memory ``bot.ports.KeyValueStore`` for adapter tests. Entries with a ``ttl_s`` expire by the
    injected ``now`` (seconds; default: never), so expiry is tested without waiting."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self._now = now or (lambda: 0.0)
        self.entries: dict[str, tuple[str, float | None]] = {}

    async def get(self, key: str) -> str | None:
        found = self.entries.get(key)
        if found is None or (found[1] is not None and found[1] <= self._now()):
            return None
        return found[0]

    async def put(self, key: str, value: str, *, ttl_s: float | None = None) -> None:
        self.entries[key] = (value, None if ttl_s is None else self._now() + ttl_s)

    async def delete(self, key: str) -> None:
        self.entries.pop(key, None)
