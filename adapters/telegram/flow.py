"""Flow control for the Telegram adapter: jittered backoff and per-chat send pacing.

Telegram's published flood limits: about one message per second in a chat, no more than 20 messages per
minute in a group, about 30 messages per second overall. Going past them earns a 429 with ``retry_after``,
which we honour as well; pacing just makes the 429 rare. Order per chat is kept by a FIFO turn per chat:
whoever asked first sends first, including retries after a flood wait.

Everything takes a ``Clock`` (``bot.ports.Clock``) and a ``random.Random`` so tests drive time by hand.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.ports import Clock


class SystemClock:
    """The real clock (``bot.ports.Clock``)."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Backoff:
    """Exponential backoff with "equal jitter": each delay is in ``[d/2, d]`` for ``d = min(cap, base*2^n)``,
    so it never collapses to a hot loop and never exceeds ``cap``. ``reset`` after a success."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True, slots=True)
class Pacing:
    """Send limits. The defaults are Telegram's documented flood limits."""

    chat_interval_s: float = 1.0
    group_per_minute: int = 20
    global_per_second: int = 30


class ChatPacer:
    """Per-chat FIFO turns plus rate windows.

    Use ``async with pacer.turn(chat_id):`` around everything sent for one outgoing item (all parts of a
    split text), and ``await pacer.wait_slot(chat_id, is_group)`` right before each API call inside it.
    ``hold(chat_id, seconds)`` records a flood wait the platform asked for.
    """

    def __init__(self, clock: Clock, pacing: Pacing = Pacing()) -> None:
        self._clock = clock
        self._pacing = pacing
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}
        self._last: dict[int, float] = {}
        self._not_before: dict[int, float] = {}
        self._group_window: dict[int, deque[float]] = {}
        self._global_window: deque[float] = deque()

    def _t(self) -> float:
        return self._clock.now().timestamp()

    @asynccontextmanager
    async def turn(self, chat_id: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        self._users[chat_id] = self._users.get(chat_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[chat_id] -= 1
            if not self._users[chat_id]:  # forget idle chats so the maps stay small
                del self._users[chat_id]
                self._locks.pop(chat_id, None)

    def hold(self, chat_id: int, seconds: float) -> None:
        until = self._t() + max(0.0, seconds)
        self._not_before[chat_id] = max(self._not_before.get(chat_id, 0.0), until)

    def _delay(self, chat_id: int, is_group: bool, now: float) -> float:
        p = self._pacing
        wait = 0.0
        if chat_id in self._last:
            wait = max(wait, self._last[chat_id] + p.chat_interval_s - now)
        wait = max(wait, self._not_before.get(chat_id, 0.0) - now)
        if is_group and p.group_per_minute > 0:
            window = self._group_window.setdefault(chat_id, deque())
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) >= p.group_per_minute:
                wait = max(wait, window[0] + 60.0 - now)
        if p.global_per_second > 0:
            while self._global_window and self._global_window[0] <= now - 1.0:
                self._global_window.popleft()
            if len(self._global_window) >= p.global_per_second:
                wait = max(wait, self._global_window[0] + 1.0 - now)
        return wait

    async def wait_slot(self, chat_id: int, is_group: bool) -> None:
        """Sleep until one more message to ``chat_id`` stays within every limit, then count it."""
        while True:
            now = self._t()
            wait = self._delay(chat_id, is_group, now)
            if wait <= 0:
                break
            await self._clock.sleep(wait)
        self._last[chat_id] = now
        if is_group:
            self._group_window.setdefault(chat_id, deque()).append(now)
        self._global_window.append(now)
        if len(self._last) > 10_000:  # bound memory on very busy bots; old entries no longer constrain
            cutoff = now - 60.0
            for key in [k for k, t in self._last.items() if t < cutoff]:
                self._last.pop(key, None)
                self._group_window.pop(key, None)
                self._not_before.pop(key, None)
