"""The inbox worker: takes committed events from the durable inbox and runs them through the member.

Order is kept per chat (one lane per chat key, events in arrival order, one at a time), and lanes are served
fairly under a global cap (``bot.lanes.FairLanes``): a group back from quiet goes before the backlogs of
groups that hammer the bot, which share the rest of the slots by the time their events take. A failing event
is retried with backoff up to ``max_attempts`` times, then moved to the dead-letter state so the chat's
stream behind it moves on. An event whose platform is unreachable (``PlatformUnavailable``) is not at fault:
it keeps its place and is retried with capped, jittered backoff for as long as the outage lasts, without
using up attempts and without holding a slot (``wake`` ends those waits early: a platform just connected).
``stop`` stops taking new work and lets in-flight events finish (or, past the grace period, leaves them
pending in the inbox for the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from bot.errors import PlatformUnavailable
from bot.events import Message
from bot.lanes import FairLanes
from bot.state import InboxItem, StateDB
from bot.supervisor import backoff_delay

log = logging.getLogger("paibot.runtime")

Handler = Callable[[Message], Awaitable[None]]
PAGE = 500  # inbox events read per pass


class InboxWorker:
    """``parallel`` events run at once at most (one per chat), ``reserve`` of those slots only for chats
    back from quiet (see ``bot.lanes``). ``monotonic`` times events (their cost in the fair share);
    ``on_handled(event, dead)`` is told of every event that leaves the inbox, ``on_started(waited_s, quiet)`` of
    how long each waited in its lane (``quiet``: it came to an empty lane, a group back from quiet)."""

    def __init__(
        self,
        state: StateDB,
        handler: Handler,
        *,
        max_attempts: int = 3,
        parallel: int = 64,
        reserve: int = 16,
        retry_delay_s: float = 0.5,
        poll_interval_s: float = 1.0,
        outage_base_s: float = 1.0,
        outage_cap_s: float = 60.0,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_handled: Callable[[Message, bool], None] | None = None,
        on_started: Callable[[float, bool], None] | None = None,
    ) -> None:
        self._state = state
        self._handler = handler
        self._max_attempts = max_attempts
        self.lanes: FairLanes[InboxItem] = FairLanes(parallel, reserve)
        self._retry_delay_s = retry_delay_s
        self._poll_interval_s = poll_interval_s
        self._outage_base_s = outage_base_s
        self._outage_cap_s = outage_cap_s
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._on_handled = on_handled
        self._on_started = on_started
        self._queued_at: dict[int, float] = {}  # seq -> when it entered its lane (for on_started)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outages: dict[int, int] = {}  # seq -> outage retries so far (the backoff's exponent)
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
            for item in items:
                if item.seq not in self._dispatched:
                    self.idle.clear()
                    self._dispatched.add(item.seq)
                    self._queued_at[item.seq] = self._monotonic()
                    self.lanes.push(item.event.chat.key, item)
            self._start_what_may()
            if items:
                self._high = max(self._high, items[-1].seq)
            if len(items) == PAGE:
                continue  # more is waiting behind this page
            if not self._dispatched:
                self.idle.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._state.new_events.wait(), self._poll_interval_s)

    def _start_what_may(self) -> None:
        while not self._stopping and (got := self.lanes.take()) is not None:
            key, item = got
            self._track(asyncio.create_task(self._run(key, item), name=f"lane:{key}"))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, item: InboxItem) -> None:
        started = self._monotonic()
        queued = self._queued_at.pop(item.seq, None)
        if queued is not None and self._on_started is not None:
            self._on_started(started - queued, self.lanes.from_quiet(key))
        wait: float | None = None
        try:
            wait = await self._process(item, self._outages.get(item.seq, 0))
        finally:
            held = wait is not None and not self._stopping
            self.lanes.done(key, self._monotonic() - started, hold=held)
            if held:
                assert wait is not None
                self._outages[item.seq] = self._outages.get(item.seq, 0) + 1
                self._track(asyncio.create_task(self._wait_out(key, item, wait), name=f"outage:{key}"))
            else:
                self._outages.pop(item.seq, None)
                self._dispatched.discard(item.seq)
                if not self._dispatched:
                    self.idle.set()
            self._start_what_may()

    async def _wait_out(self, key: str, item: InboxItem, wait: float) -> None:
        """An event whose platform is unreachable waits without a slot, then takes its lane's head again."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)
        if self._stopping:  # it stays pending in the inbox for the next start
            self._dispatched.discard(item.seq)
            return
        self.lanes.resume(key, item)
        self._start_what_may()

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
                wait = backoff_delay(outage, self._outage_base_s, self._outage_cap_s, self._rng)
                log.warning("%s: platform unreachable (%s); trying again in %.1fs", item.event.event_id, exc, wait)
                return wait
            except Exception as exc:  # one bad event must never kill the loop
                log.exception("handling %s failed (attempt %d)", item.event.event_id, attempts + 1)
                dead = await self._state.mark_failed(item.seq, f"{type(exc).__name__}: {exc}", self._max_attempts)
                attempts += 1
                if dead:
                    log.error("%s moved to the dead-letter table after %d attempts", item.event.event_id, attempts)
                    self._handled(item.event, dead=True)
                    return None
                if self._stopping:
                    return None
                await asyncio.sleep(self._retry_delay_s * attempts)
                continue
            await self._state.mark_done(item.seq)
            self._handled(item.event, dead=False)
            return None

    def _handled(self, event: Message, *, dead: bool) -> None:
        if self._on_handled is not None:
            try:
                self._on_handled(event, dead)
            except Exception:  # counting must never cost an event
                log.exception("the handled-event hook failed")

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
        for item in self.lanes.drain():  # queued events stay pending in the inbox for the next start
            self._dispatched.discard(item.seq)
            self._queued_at.pop(item.seq, None)
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
