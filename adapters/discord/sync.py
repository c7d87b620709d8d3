"""Per-channel delivery with a durable "last processed message" cursor, and history backfill.

discord.py resumes a gateway session only inside one process; after a restart (or a new session) the
messages sent meanwhile are only in channel history. The rule that keeps nothing lost:

* Each channel has a cursor ``discord:last:<channel id>`` in the core's inbox, committed in the same
  transaction as the events (``sink.submit(..., cursor_key=, cursor=)``).
* A channel is *synced* once its history after the cursor has been backfilled in this session. Live
  messages of a synced channel advance the cursor; live messages of an unsynced channel are submitted
  without a cursor (the inbox deduplicates them by event id when the backfill delivers them again), so the
  cursor never jumps over a gap that has not been backfilled.
* A disconnect unsyncs every channel; ``on_ready``/``on_resumed`` backfill again. A failed submit unsyncs
  the channel too, so the next backfill repairs it.
* A channel without a cursor (first time seen) is not replayed from the beginning of time: its cursor is
  set to the newest message (``0`` for an empty channel), so only what comes after is delivered (history
  from before the bot was there is not answered hours later). This needs ``submit([])`` with a cursor.
* The window is bounded (``limit`` newest messages after the cursor); a longer gap is logged as a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord

from bot.events import Message
from bot.ports import IntakeSink

log = logging.getLogger("paibot.discord")

BATCH = 50


def cursor_key(channel_id: int) -> str:
    return f"discord:last:{channel_id}"


class ChannelSync:
    """Delivers messages to the sink channel by channel, keeping each channel's cursor monotonic."""

    def __init__(self, sink: IntakeSink, convert: Callable[[discord.Message], Message], limit: int) -> None:
        self._sink = sink
        self._convert = convert
        self._limit = max(1, limit)
        self._locks: dict[int, asyncio.Lock] = {}
        self._cursors: dict[int, int] = {}
        self.synced: set[int] = set()
        self.passes = 0  # completed backfill passes (observable by tests and logs)

    def _lock(self, channel_id: int) -> asyncio.Lock:
        return self._locks.setdefault(channel_id, asyncio.Lock())

    def unsync_all(self) -> None:
        self.synced.clear()

    async def deliver_unordered(self, events: list[Message]) -> int:
        """Submit events that are not part of a channel's history order (edits, slash commands)."""
        return await self._sink.submit(events)

    async def deliver_live(self, msg: discord.Message) -> bool:
        """Submit one live message. Returns whether its channel still needs a backfill."""
        event = self._convert(msg)
        channel_id = msg.channel.id
        if channel_id not in self.synced:
            await self._sink.submit([event])
            return True
        async with self._lock(channel_id):
            cursor = max(self._cursors.get(channel_id, 0), msg.id)
            try:
                await self._sink.submit([event], cursor_key=cursor_key(channel_id), cursor=str(cursor))
            except Exception:
                self.synced.discard(channel_id)
                raise
            self._cursors[channel_id] = cursor
        return False

    async def backfill(self, channel: Any) -> int:
        """Deliver ``channel``'s messages after its cursor (bounded), then mark it synced. Returns how many
        events were new to the inbox."""
        channel_id = channel.id
        async with self._lock(channel_id):
            stored = await self._sink.cursor(cursor_key(channel_id))
            if stored is None:
                newest = [m async for m in channel.history(limit=1)]
                baseline = newest[0].id if newest else 0  # an empty channel: everything after it counts
                await self._sink.submit([], cursor_key=cursor_key(channel_id), cursor=str(baseline))
                self._cursors[channel_id] = max(self._cursors.get(channel_id, 0), baseline)
                self.synced.add(channel_id)
                return 0
            after = int(stored)
            fetched = [m async for m in channel.history(limit=self._limit + 1, after=discord.Object(after),
                                                        oldest_first=False)]
            if len(fetched) > self._limit:
                log.warning("discord: channel %s missed more than %d messages while away; the oldest ones "
                            "are skipped (raise adapters.discord.backfill_limit to keep more)",
                            channel_id, self._limit)
                fetched = fetched[: self._limit]
            fetched.sort(key=lambda m: m.id)
            new = 0
            for start in range(0, len(fetched), BATCH):
                batch = fetched[start:start + BATCH]
                last = max(after, batch[-1].id)
                new += await self._sink.submit([self._convert(m) for m in batch],
                                               cursor_key=cursor_key(channel_id), cursor=str(last))
                after = last
            self._cursors[channel_id] = max(self._cursors.get(channel_id, 0), after)
            self.synced.add(channel_id)
            if fetched:
                log.info("discord: backfilled %d message(s) in channel %s (%d new)", len(fetched), channel_id, new)
            return new
