"""Fair lanes: which group's event runs next. Pure bookkeeping (no I/O, no clock); the inbox worker
(``bot.runtime``) feeds it events and the seconds each one took.

Every chat has a lane (its events in arrival order). At most one event per lane is in flight, and at most
``cap`` in all. When a slot frees, the next event is chosen in two steps:

1. Lanes *back from quiet* go first: their event arrived while the lane had nothing queued or running (a
   group asking one thing, then waiting for the answer). Lanes working through a backlog come after.
2. Within each kind, the lane that has had the least service goes first, in virtual time (start-time fair
   queuing): a lane that becomes ready is tagged ``max(V, its last finish)``, ``V`` being the tag of the
   last event started; when its event is done, the lane's finish is its tag plus the seconds the event took.
   Ties go in the order lanes became ready.

``reserve`` of the ``cap`` slots are for lanes back from quiet only, so backlogs can never hold every slot:
while the reserve has room, a quiet group's message starts at once, and otherwise at the first slot to free,
at most one answer's time, whatever the other groups' backlog. Groups that hammer the bot share the rest by
time (a group whose answers take 5 s gets one for every five of a group whose answers take 1 s).

Backlogs wait while lanes back from quiet fill the slots; that takes a stream of distinct groups each asking
one thing at a time, which the admission of new groups and the per-group rate limits bound (bot.admission,
bot.limits).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

READY, RUNNING, HELD, EMPTY = "ready", "running", "held", "empty"
MIN_COST = 0.001  # even an instant event costs something: a flood of cheap events still counts
SWEEP_EVERY = 256  # events done between sweeps of idle lanes


@dataclass
class _Lane(Generic[T]):
    items: deque[T] = field(default_factory=deque)
    state: str = EMPTY
    tag: float = 0.0
    finish: float = 0.0
    from_quiet: bool = False  # its event arrived to an empty lane (goes first, may use the reserve)


class FairLanes(Generic[T]):
    """Per-key FIFO lanes served fairly under a global cap. Not thread-safe (one event loop owns it)."""

    def __init__(self, cap: int, reserve: int = 0) -> None:
        if cap < 1 or not 0 <= reserve < cap:
            raise ValueError("cap must be at least 1 and reserve between 0 and cap - 1")
        self.cap = cap
        self.reserve = reserve
        self._lanes: dict[str, _Lane[T]] = {}
        # (0 back from quiet | 1 busy, tag, order, key); entries of lanes since changed are skipped
        self._ready: list[tuple[int, float, int, str]] = []
        self._order = itertools.count()
        self._v = 0.0
        self.running = 0
        self._busy_running = 0  # running events of lanes that were not back from quiet
        self._dones = 0

    # ----------------------------------------------------------------- feeding

    def push(self, key: str, item: T) -> None:
        """Append an event to its lane."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.items.append(item)
        if lane.state == EMPTY:
            self._make_ready(key, lane, from_quiet=True)

    def take(self) -> tuple[str, T] | None:
        """The next event to start (its lane is then running), or None when nothing may start now."""
        skipped: list[tuple[int, float, int, str]] = []
        found: tuple[str, T] | None = None
        while self._ready and self.running < self.cap:
            entry = heapq.heappop(self._ready)
            _, tag, _, key = entry
            lane = self._lanes.get(key)
            if lane is None or lane.state != READY or lane.tag != tag:
                continue  # stale
            if not lane.from_quiet and self._busy_running >= self.cap - self.reserve:
                skipped.append(entry)  # the reserve is for lanes back from quiet
                continue
            lane.state = RUNNING
            self._v = max(self._v, tag)
            self.running += 1
            if not lane.from_quiet:
                self._busy_running += 1
            found = (key, lane.items.popleft())
            break
        for entry in skipped:
            heapq.heappush(self._ready, entry)
        return found

    def done(self, key: str, cost_s: float, *, hold: bool = False) -> None:
        """The lane's running event has ended after ``cost_s`` seconds of service. With ``hold`` the lane
        stays out of the running until ``resume`` (its event waits, e.g. for a platform to come back)."""
        lane = self._lanes[key]
        assert lane.state == RUNNING, f"{key} has no event running"
        self.running -= 1
        if not lane.from_quiet:
            self._busy_running -= 1
        lane.finish = lane.tag + max(MIN_COST, cost_s)
        if hold:
            lane.state = HELD
        elif lane.items:
            self._make_ready(key, lane, from_quiet=False)
        else:
            lane.state = EMPTY
        self._dones += 1
        if self.running == 0 and not self._ready:
            # Idle: everyone has caught up. V moves to the latest finish, so every lane is back from quiet
            # (and every empty lane can go).
            self._v = max([self._v, *(lane.finish for lane in self._lanes.values())])
            self._sweep()
        elif self._dones % SWEEP_EVERY == 0:
            self._sweep()

    def resume(self, key: str, item: T) -> None:
        """Put a held lane's event back at its head and make the lane ready."""
        lane = self._lanes[key]
        assert lane.state == HELD, f"{key} is not held"
        lane.items.appendleft(item)
        self._make_ready(key, lane, from_quiet=lane.from_quiet)

    def drain(self) -> Iterator[T]:
        """Remove and yield every queued event (not those running): the worker is stopping."""
        for lane in self._lanes.values():
            while lane.items:
                yield lane.items.popleft()
            if lane.state == READY:
                lane.state = EMPTY
        self._ready.clear()

    # ----------------------------------------------------------------- figures

    def from_quiet(self, key: str) -> bool:
        """Whether the lane's current event came to an empty lane (a group back from quiet)."""
        lane = self._lanes.get(key)
        return lane is not None and lane.from_quiet

    @property
    def queued(self) -> int:
        """Events waiting in lanes (not running)."""
        return sum(len(lane.items) for lane in self._lanes.values())

    @property
    def deepest(self) -> int:
        """The longest lane's queue."""
        return max((len(lane.items) for lane in self._lanes.values()), default=0)

    @property
    def lanes(self) -> int:
        """Lanes with work (queued, running or held)."""
        return sum(1 for lane in self._lanes.values() if lane.state != EMPTY)

    # ----------------------------------------------------------------- internals

    def _make_ready(self, key: str, lane: _Lane[T], *, from_quiet: bool) -> None:
        lane.from_quiet = from_quiet
        lane.tag = max(self._v, lane.finish)
        lane.state = READY
        heapq.heappush(self._ready, (0 if lane.from_quiet else 1, lane.tag, next(self._order), key))

    def _sweep(self) -> None:
        """Drop empty lanes at or behind V: they would be tagged V anyway, so idle groups cost nothing."""
        for key in [k for k, lane in self._lanes.items() if lane.state == EMPTY and lane.finish <= self._v]:
            del self._lanes[key]
