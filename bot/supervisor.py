"""Riding out platform outages: capped, jittered backoff, and the loop that keeps an adapter connecting.

    Backoff             the waits between failed attempts ("equal jitter", capped)
    keep_connecting()   make a connection attempt until it succeeds, waiting out ``PlatformUnavailable``
    AdapterSupervisor   one adapter in the composition root, in one of three states:
                          connecting ──connected──▶ running ──platform lost──▶ connecting ...
                          connecting or running ──refused──▶ stopped (the operator must act)

The contract of a connection attempt (an adapter's ``start``, or any attempt handed to ``keep_connecting``):

* It returns once connected.
* It raises ``PlatformUnavailable`` when the platform cannot be reached (DNS failure, refused connection,
  timeout, 5xx, rate limit). It has released whatever it opened, so the same object may attempt again. Its
  message names what it tried to reach (the URL, never a secret); ``retry_after`` (seconds), when set, is
  the least wait before the next attempt.
* It raises ``AdapterConfigError`` (``CredentialsRejected`` for a refused token or password) when only the
  operator can fix it; the message is the instruction. Nothing is retried.
* Anything else is a bug or a refusal nobody foresaw: nothing is retried either.

A running adapter that cannot get its platform back by itself says so through ``connection_lost``
(``bot.ports.ConnectionWatch``); the supervisor then connects it again the same way (the backoff starts
over only after a connection that lasted ``STABLE_S``, so a connection that keeps dropping is not retried
in a hot loop).

What the log shows: one warning when a series of failures begins (a series is a run of failures with the
same reason), naming the URL and when the next try is; the further attempts of the series at debug level,
with a reminder at warning level every ten minutes; one line once connected. Waits use an injected
``Clock`` and ``random.Random``, so tests drive them without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.errors import AdapterConfigError, PlatformUnavailable
from bot.ports import ChatAdapter, Clock, IntakeSink

T = TypeVar("T")

CAP_S = 60.0
MAX_RETRY_AFTER_S = 900.0  # a platform asking for longer is treated as asking for this
REMIND_EVERY_S = 600.0
STABLE_S = 60.0  # a connection that lasted this long starts the backoff over when it is lost

CONNECTING, RUNNING, STOPPED = "connecting", "running", "stopped"


def backoff_delay(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The wait after ``failures`` failures so far: in ``[d/2, d]`` for ``d = min(cap, base * 2^failures)``
    ("equal jitter"; the exponent is capped, so a days-long outage never overflows a float)."""
    ceiling = min(cap_s, base_s * 2 ** min(failures, 32))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


class Backoff:
    """Exponential backoff with "equal jitter": the n-th wait is in ``[d/2, d]`` for
    ``d = min(cap, base * 2^n)``, so it never collapses into a hot loop, never exceeds ``cap_s``, and peers
    that failed together spread out. ``reset()`` starts again from ``base_s``."""

    def __init__(self, rng: random.Random, base_s: float = 1.0, cap_s: float = CAP_S) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self._rng = rng
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self.failures, self.base_s, self.cap_s, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


async def keep_connecting(
    attempt: Callable[[], Awaitable[T]],
    *,
    name: str,
    clock: Clock,
    backoff: Backoff,
    log: logging.Logger,
    on_unavailable: Callable[[PlatformUnavailable], None] | None = None,
) -> T:
    """Call ``attempt`` until it returns, waiting ``backoff`` (at least ``retry_after``) after each
    ``PlatformUnavailable``; ``on_unavailable`` hears of each such failure before the wait. Any other
    exception propagates at once. Logs as the module docstring says, each line starting with ``name``.
    The caller decides when ``backoff`` starts over (``reset``): a connection that drops again at once
    should not be retried at once."""
    failures = 0
    reason = ""
    began = warned = clock.now()
    while True:
        try:
            result = await attempt()
        except PlatformUnavailable as exc:
            failures += 1
            delay = backoff.next_delay()
            if exc.retry_after:
                delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER_S))
            now = clock.now()
            if str(exc) != reason:  # a new series
                reason, warned = str(exc), now
                log.warning("%s: %s; next try in %.1fs (retrying in the background, at most %.0fs apart)",
                            name, exc, delay, backoff.cap_s)
            elif (now - warned).total_seconds() >= REMIND_EVERY_S:
                warned = now
                log.warning("%s: still not connected after %d attempts since %s: %s; next try in %.1fs",
                            name, failures, began.strftime("%H:%M:%S %Z"), exc, delay)
            else:
                log.debug("%s: attempt %d failed: %s; next try in %.1fs", name, failures, exc, delay)
            if on_unavailable is not None:
                on_unavailable(exc)
            await clock.sleep(delay)
            continue
        if failures:
            lasted = (clock.now() - began).total_seconds()
            log.info("%s: connected after %d failed attempt(s) over %.0fs", name, failures, lasted)
        return result


class AdapterSupervisor:
    """Starts one adapter and keeps it connected through platform outages (the contract above).

    ``launch()`` runs the attempts in the task ``connect:<name>``. ``settled`` is set once the first attempt
    has an outcome: connected, unreachable (retrying in the background), or stopped. ``state`` is
    ``"connecting"``, ``"running"`` or ``"stopped"``; ``reason`` says why it is not running (the last
    failure while connecting, the operator instruction once stopped). ``on_change(self)`` hears of every
    change of ``state`` or ``reason``. ``stop()`` cancels the attempts and stops the adapter; idempotent.
    """

    def __init__(
        self,
        name: str,
        adapter: ChatAdapter,
        sink: IntakeSink,
        *,
        clock: Clock,
        rng: random.Random,
        on_change: Callable[[AdapterSupervisor], None] = lambda _: None,
        log: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.adapter = adapter
        self._sink = sink
        self._clock = clock
        self._backoff = Backoff(rng)
        self._on_change = on_change
        self._log = log or logging.getLogger("paibot.supervisor")
        self.state = CONNECTING
        self.reason = f"the {name} adapter is connecting"
        self.settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._attempted = False

    def launch(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"connect:{self.name}")

    async def _attempt(self) -> None:
        self._attempted = True
        await self.adapter.start(self._sink)

    def _unavailable(self, exc: PlatformUnavailable) -> None:
        self._set(CONNECTING, f"the {self.name} adapter is not connected yet: {exc}")
        self.settled.set()

    async def _run(self) -> None:
        self._log.info("starting the %s adapter", self.name)
        try:
            while True:
                await keep_connecting(self._attempt, name=self.name, clock=self._clock, backoff=self._backoff,
                                      log=self._log, on_unavailable=self._unavailable)
                self._set(RUNNING, "")
                self.settled.set()
                if not await self._reconnect_after_a_loss():
                    return
        except asyncio.CancelledError:
            raise
        except AdapterConfigError as exc:
            self._log.error("%s: stopped: %s", self.name, exc)
            await self._give_up(str(exc))
        except Exception as exc:  # a bug or an unforeseen refusal: this adapter stops, the others go on
            self._log.error("the %s adapter could not start", self.name, exc_info=exc)
            await self._give_up(f"the {self.name} adapter could not start: {exc}")
        finally:
            self.settled.set()

    async def _reconnect_after_a_loss(self) -> bool:
        """Wait until the running adapter loses its platform (``bot.ports.ConnectionWatch``; adapters
        without that role reconnect by themselves: False at once). True when it should connect again after
        the wait done here; a refusal it reports is raised."""
        watch = getattr(self.adapter, "connection_lost", None)
        if watch is None:
            return False
        connected_at = self._clock.now()
        problem = await watch()
        if not isinstance(problem, PlatformUnavailable):
            raise problem
        if (self._clock.now() - connected_at).total_seconds() >= STABLE_S:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        self._log.warning("%s: lost the connection (%s); reconnecting in %.1fs", self.name, problem, delay)
        self._set(CONNECTING, f"the {self.name} adapter lost its connection: {problem}")
        await self._clock.sleep(delay)
        return True

    async def _give_up(self, reason: str) -> None:
        await self._stop_adapter()
        self._set(STOPPED, reason)

    def _set(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            self.state, self.reason = state, reason
            self._on_change(self)

    async def cancel(self) -> None:
        """Stop connecting (a running adapter stays running)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        await self.cancel()
        await self._stop_adapter()

    async def _stop_adapter(self) -> None:
        attempted, self._attempted = self._attempted, False
        if not attempted:
            return
        try:
            await self.adapter.stop()
        except Exception:
            self._log.exception("stopping the %s adapter failed", self.name)
