"""A background loop that runs a skill's due work (reminders to fire, polls to close).

``DueLoop`` waits ``poll_s`` real seconds (or until ``wake()`` is called: a new reminder was added), then
calls ``run_due(now)`` with ``now`` from the injected clock, and again. Why not ``clock.sleep``: the test clock
(``ManualClock``) advances time when slept on, so a polling loop would race time forward; here time only
comes from ``clock.now()`` and the real wait is merely the pacing. Exactly-once is not this loop's job:
``run_due`` must claim each job durably before acting, so two runners (or a restart) never act twice.

A failing ``run_due`` is logged and retried after a jittered, capped backoff; it never kills the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.ports import Clock

log = logging.getLogger("paibot.skills.due")

RunDue = Callable[[datetime], Awaitable[int]]


class DueLoop:
    """One named, tracked task polling ``run_due``. ``start``/``stop`` make it a background service."""

    def __init__(
        self,
        name: str,
        run_due: RunDue,
        clock: Clock,
        *,
        poll_s: float = 1.0,
        max_backoff_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._run_due = run_due
        self._clock = clock
        self._poll_s = poll_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"due:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> int:
        """Run the due work once now (the loop and explicit ticks never overlap)."""
        async with self._lock:
            return await self._run_due(self._clock.now())

    async def _loop(self) -> None:
        # The first pass waits one interval: the App starts background services before its adapters, and
        # due work needs a connected platform anyway.
        failures, delay = 0, self._poll_s
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                await self.tick()
                failures = 0
                delay = self._poll_s
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(self._max_backoff_s, self._poll_s * 2**failures) * (0.5 + self._rng.random() / 2)
                log.exception(
                    "%s: due work failed (attempt %d); retrying in %.1fs", self.name, failures, delay
                )
