"""The relay worker: takes queued relay jobs and carries them out (``bot.relay.sender``), in order per
target group, groups in parallel up to a bound.

A job whose platform is unreachable (``PlatformUnavailable``) keeps its place: its group's lane waits with
capped, jittered backoff (``wake`` ends the wait early: a platform just connected) while other groups go on.
Any other failure is retried a few times, then the job is given up (logged), so one bad job never blocks a
group for good. ``stop`` takes no new work and lets jobs in flight finish; what is left stays queued in the
database for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from bot.errors import PlatformUnavailable
from bot.relay.jobs import Job, RelayJobs
from bot.relay.sender import RelaySender
from bot.supervisor import backoff_delay

log = logging.getLogger("paibot.relay")


class RelayWorker:
    def __init__(
        self,
        jobs: RelayJobs,
        sender: RelaySender,
        *,
        max_attempts: int = 3,
        max_parallel: int = 8,
        retry_delay_s: float = 0.5,
        outage_base_s: float = 1.0,
        outage_cap_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._jobs = jobs
        self._sender = sender
        self._max_attempts = max_attempts
        self._sem = asyncio.Semaphore(max_parallel)
        self._retry_delay_s = retry_delay_s
        self._outage_base_s = outage_base_s
        self._outage_cap_s = outage_cap_s
        self._rng = rng or random.Random()
        self._new = asyncio.Event()
        self._wake = asyncio.Event()
        self._lanes: dict[str, asyncio.Queue[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dispatched: set[int] = set()
        self._high = 0
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        self.idle = asyncio.Event()

    def start(self) -> None:
        self._main = asyncio.create_task(self._pump(), name="relay-pump")

    def kick(self) -> None:
        """New jobs were queued."""
        self.idle.clear()
        self._new.set()

    def wake(self) -> None:
        """Retry now the jobs waiting out an unreachable platform (it has just connected)."""
        woken, self._wake = self._wake, asyncio.Event()
        woken.set()

    async def _pump(self) -> None:
        while not self._stopping:
            self._new.clear()
            try:
                jobs = await self._jobs.queued(after_seq=self._high)
            except Exception:
                log.exception("could not read the relay queue; retrying")
                jobs = []
            for job in jobs:
                if job.seq not in self._dispatched:
                    self._dispatch(job)
            if jobs:
                self._high = max(self._high, jobs[-1].seq)
                continue
            if not self._dispatched:
                self.idle.set()
            await self._new.wait()

    def _dispatch(self, job: Job) -> None:
        self.idle.clear()
        self._dispatched.add(job.seq)
        lane = self._lanes.get(job.target)
        if lane is None:
            lane = self._lanes[job.target] = asyncio.Queue()
            self._tasks[job.target] = asyncio.create_task(self._run_lane(job.target, lane),
                                                          name=f"relay:{job.target}")
        lane.put_nowait(job)

    async def _run_lane(self, target: str, lane: asyncio.Queue[Job]) -> None:
        try:
            while not lane.empty() and not self._stopping:
                job = lane.get_nowait()
                outage = 0
                while True:
                    async with self._sem:
                        wait = await self._process(job, outage)
                    if wait is None or self._stopping:
                        break
                    outage += 1
                    with contextlib.suppress(asyncio.TimeoutError):  # outside the semaphore
                        await asyncio.wait_for(self._wake.wait(), wait)
                self._dispatched.discard(job.seq)
        finally:
            while not lane.empty():
                self._dispatched.discard(lane.get_nowait().seq)
            self._lanes.pop(target, None)
            self._tasks.pop(target, None)
            if not self._dispatched:
                self.idle.set()
                self._new.set()  # the pump re-reads: jobs queued while this lane was closing

    async def _process(self, job: Job, outage: int) -> float | None:
        """Carry out one job; the wait before trying again when its platform is unreachable, else None."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._sender.run(job)
                return None
            except asyncio.CancelledError:
                raise
            except PlatformUnavailable as exc:
                wait = backoff_delay(outage, self._outage_base_s, self._outage_cap_s, self._rng)
                log.warning("relay to %s: platform unreachable (%s); trying again in %.1fs", job.target, exc, wait)
                return wait
            except Exception:  # one bad job must never stop the group's relay
                log.exception("relay job %s failed (attempt %d)", job.key, attempt)
                if self._stopping:
                    return None
                await asyncio.sleep(self._retry_delay_s * attempt)
        log.error("relay job %s given up after %d attempts", job.key, self._max_attempts)
        with contextlib.suppress(Exception):
            await self._jobs.done(job.seq)
        return None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every job queued so far is done (tests and graceful stop)."""

        async def until_idle() -> None:
            while True:
                await self.idle.wait()
                if not await self._jobs.queued(limit=1):
                    return
                self.kick()
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_idle(), timeout)

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        self.wake()
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
