"""The inbox worker: takes committed events from the durable inbox and runs them through the member.

Order is kept per chat (one lane per chat key, events in arrival order); chats run concurrently up to a
bound. A failing event is retried with backoff up to ``max_attempts`` times, then moved to the dead-letter
state so the chat's stream behind it moves on. An event whose platform is unreachable (``PlatformUnavailable``)
is not at fault: it keeps its place and is retried with capped, jittered backoff for as long as the outage
lasts, without using up attempts (``wake`` ends those waits early: a platform just connected). ``stop`` stops
taking new work and lets in-flight events
finish (or, past the grace period, leaves them pending in the inbox for the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from bot.errors import PlatformUnavailable
from bot.events import Message
from bot.state import InboxItem, StateDB

log = logging.getLogger("paibot.runtime")

Handler = Callable[[Message], Awaitable[None]]
PAGE = 500  # inbox events read per pass


class InboxWorker:
    def __init__(
        self,
        state: StateDB,
        handler: Handler,
        *,
        max_attempts: int = 3,
        max_parallel_chats: int = 8,
        retry_delay_s: float = 0.5,
        poll_interval_s: float = 1.0,
        outage_base_s: float = 1.0,
        outage_cap_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._state = state
        self._handler = handler
        self._max_attempts = max_attempts
        self._sem = asyncio.Semaphore(max_parallel_chats)
        self._retry_delay_s = retry_delay_s
        self._poll_interval_s = poll_interval_s
        self._outage_base_s = outage_base_s
        self._outage_cap_s = outage_cap_s
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Queue[InboxItem]] = {}
        self._lane_tasks: dict[str, asyncio.Task[None]] = {}
        self._dispatched: set[int] = set()
        # The highest inbox seq handed to a lane: the pump reads past it, so a backlog in one chat (a flood)
        # never hides the events of other chats behind it.
        self._high = 0
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        self.idle = asyncio.Event()

    def start(self) -> None:
        self._main = asyncio.create_task(self._pump(), name="inbox-pump")

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` has begun (no new work is taken; work in flight may still finish)."""
        return self._stopping

    async def _pump(self) -> None:
        while not self._stopping:
            self._state.new_events.clear()
            try:
                items = await self._state.pending(limit=PAGE, after_seq=self._high)
            except Exception:
                log.exception("could not read the inbox; retrying")
                items = []
            fresh = [i for i in items if i.seq not in self._dispatched]
            for item in fresh:
                self._dispatch(item)
            if items:
                self._high = max(self._high, items[-1].seq)
            if len(items) == PAGE:
                continue  # more is waiting behind this page
            if not self._dispatched:
                self.idle.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._state.new_events.wait(), self._poll_interval_s)

    def _dispatch(self, item: InboxItem) -> None:
        self.idle.clear()
        key = item.event.chat.key
        self._dispatched.add(item.seq)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = asyncio.Queue()
            self._lane_tasks[key] = asyncio.create_task(self._run_lane(key, lane), name=f"lane:{key}")
        lane.put_nowait(item)

    async def _run_lane(self, key: str, lane: asyncio.Queue[InboxItem]) -> None:
        try:
            while not lane.empty() and not self._stopping:
                item = lane.get_nowait()
                outage = 0
                while True:
                    async with self._sem:
                        wait = await self._process(item, outage)
                    if wait is None or self._stopping:
                        break
                    outage += 1
                    with contextlib.suppress(asyncio.TimeoutError):  # outside the semaphore: other chats go on
                        await asyncio.wait_for(self._wake.wait(), wait)
                self._dispatched.discard(item.seq)
        finally:
            # Anything left (we are stopping) stays pending in the inbox for the next start.
            while not lane.empty():
                self._dispatched.discard(lane.get_nowait().seq)
            self._lanes.pop(key, None)
            self._lane_tasks.pop(key, None)
            if not self._dispatched:
                self.idle.set()

    async def _process(self, item: InboxItem, outage: int = 0) -> float | None:
        """Handle one event; returns how long to wait before trying it again when its platform is
        unreachable (the event keeps its place in its chat and no attempt is counted), else None."""
        attempts = item.attempts
        while True:
            try:
                await self._handler(item.event)
            except asyncio.CancelledError:
                raise
            except PlatformUnavailable as exc:
                wait = min(self._outage_cap_s, self._outage_base_s * 2**outage) * self._rng.uniform(0.5, 1.0)
                log.warning("%s: platform unreachable (%s); trying again in %.1fs", item.event.event_id, exc, wait)
                return wait
            except Exception as exc:  # one bad event must never kill the loop
                log.exception("handling %s failed (attempt %d)", item.event.event_id, attempts + 1)
                dead = await self._state.mark_failed(item.seq, f"{type(exc).__name__}: {exc}", self._max_attempts)
                attempts += 1
                if dead:
                    log.error("%s moved to the dead-letter table after %d attempts", item.event.event_id, attempts)
                    return None
                if self._stopping:
                    return None
                await asyncio.sleep(self._retry_delay_s * attempts)
                continue
            await self._state.mark_done(item.seq)
            return None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything committed so far has been handled (tests and graceful stop)."""

        async def until_idle() -> None:
            while True:
                await self.idle.wait()
                if not await self._state.pending(limit=1):
                    return
                self._state.new_events.set()
                self.idle.clear()
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_idle(), timeout)

    def wake(self) -> None:
        """Retry now the events waiting out an unreachable platform (it has just connected)."""
        woken, self._wake = self._wake, asyncio.Event()
        woken.set()

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        self.wake()
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        tasks = list(self._lane_tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
