"""Send pacing per chat, to stay clear of QQ's risk control (风控).

QQ publishes no limits; what gets an account muted or its messages swallowed is bursts: several messages
a second in one group, dozens a minute. So each chat gets at most one message per ``interval_s`` (with up
to ``jitter_s`` added, so a bot does not tick like a machine) and at most ``per_minute`` a minute, and all
chats together at most ``global_per_minute``. Everything sent for one outgoing item (the parts of a split
answer) goes in one FIFO turn, so parts never interleave with another reply's.

Time comes from an injected ``Clock`` and randomness from an injected ``random.Random``.
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
    """The real clock (``bot.ports.Clock``); tests inject a manual one."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Pacing:
    interval_s: float = 1.5
    jitter_s: float = 0.5
    per_minute: int = 20
    global_per_minute: int = 60


class ChatPacer:
    def __init__(self, clock: Clock, pacing: Pacing = Pacing(), rng: random.Random | None = None) -> None:
        self._clock = clock
        self._p = pacing
        self._rng = rng or random.Random()
        self._turns: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._next: dict[str, float] = {}  # earliest time of the chat's next message
        self._minute: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._hold: dict[str, float] = {}

    @asynccontextmanager
    async def turn(self, chat: str) -> AsyncIterator[None]:
        lock = self._turns.setdefault(chat, asyncio.Lock())
        self._users[chat] = self._users.get(chat, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[chat] -= 1
            if not self._users[chat]:
                del self._users[chat]
                self._turns.pop(chat, None)

    def hold(self, chat: str, seconds: float) -> None:
        """Send nothing to ``chat`` for ``seconds`` (after the platform pushed back)."""
        self._hold[chat] = max(self._hold.get(chat, 0.0), self._t() + seconds)

    def _t(self) -> float:
        return self._clock.now().timestamp()

    def _wait(self, chat: str, now: float) -> float:
        wait = max(self._next.get(chat, 0.0), self._hold.get(chat, 0.0)) - now
        window = self._minute.setdefault(chat, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if self._p.per_minute > 0 and len(window) >= self._p.per_minute:
            wait = max(wait, window[0] + 60.0 - now)
        while self._all and self._all[0] <= now - 60.0:
            self._all.popleft()
        if self._p.global_per_minute > 0 and len(self._all) >= self._p.global_per_minute:
            wait = max(wait, self._all[0] + 60.0 - now)
        return wait

    async def slot(self, chat: str) -> None:
        """Wait until one more message to ``chat`` is within every limit, then count it as sent."""
        while True:
            now = self._t()
            wait = self._wait(chat, now)
            if wait < 0.001:  # below any clock's resolution: a sleep this short may not move time at all
                break
            await self._clock.sleep(wait)
        self._next[chat] = now + self._p.interval_s + self._rng.uniform(0.0, self._p.jitter_s)
        self._minute[chat].append(now)
        self._all.append(now)
        if len(self._next) > 5000:  # idle chats no longer constrain anything: keep the maps small
            for key in [k for k, t in self._next.items() if t < now and k not in self._users]:
                self._next.pop(key, None)
                self._minute.pop(key, None)
                self._hold.pop(key, None)
