"""Resilience for homeserver calls: jittered backoff and bounded retries.

nio is configured never to retry by itself (``max_limit_exceeded=0``, ``max_timeouts=0``), so every retry
decision lives here, in one place:

* ``M_LIMIT_EXCEEDED`` / HTTP 429: wait ``retry_after_ms`` (capped) when the server gives it, else back off;
* HTTP 5xx, connection errors and timeouts: jittered exponential backoff;
* anything else (403, 404, bad request): not retried, the error response is returned to the caller.

Attempts are bounded; the sync loop wraps its own calls in an endless loop that still sleeps between
failures (never a hot loop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from nio import ErrorResponse

log = logging.getLogger("paibot.matrix")

T = TypeVar("T")
MAX_RETRY_AFTER_S = 300.0


class Backoff:
    """Full-jitter exponential backoff: delay n is uniform in [base, min(cap, base * 2**n)]. The attempt
    counter resets after ``reset_after_s`` without failures."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 60.0, reset_after_s: float = 120.0,
                 rng: random.Random | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.base_s, self.cap_s, self.reset_after_s = base_s, cap_s, reset_after_s
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._attempt = 0
        self._last_failure = float("-inf")

    def next_delay(self) -> float:
        now = self._monotonic()
        if now - self._last_failure > self.reset_after_s:
            self._attempt = 0
        self._last_failure = now
        high = min(self.cap_s, self.base_s * (2 ** self._attempt))
        self._attempt += 1
        return self._rng.uniform(self.base_s, max(self.base_s, high))

    def reset(self) -> None:
        self._attempt = 0


def http_status(resp: Any) -> int:
    transport = getattr(resp, "transport_response", None)
    return int(getattr(transport, "status", 0) or 0)


def is_rate_limited(resp: Any) -> bool:
    if not isinstance(resp, ErrorResponse):
        return False
    return resp.status_code == "M_LIMIT_EXCEEDED" or http_status(resp) == 429


def is_transient(resp: Any) -> bool:
    """A failed response worth retrying: rate limited or a server-side (5xx) failure."""
    return isinstance(resp, ErrorResponse) and (is_rate_limited(resp) or http_status(resp) >= 500)


def retry_delay(resp: Any, backoff: Backoff) -> float:
    """How long to wait before retrying after ``resp`` (``None`` for a transport error)."""
    jittered = backoff.next_delay()
    if is_rate_limited(resp) and getattr(resp, "retry_after_ms", None):
        return min(MAX_RETRY_AFTER_S, resp.retry_after_ms / 1000.0) + jittered * 0.1
    return jittered


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ConnectionError)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 5,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``call`` until it returns a non-transient response, at most ``attempts`` times.

    Returns the last response (which may be an ``ErrorResponse`` the caller must handle); re-raises the last
    transport error when every attempt failed that way.
    """
    backoff = backoff or Backoff()
    for attempt in range(1, attempts + 1):
        try:
            resp = await call()
        except TRANSPORT_ERRORS as exc:
            if attempt == attempts:
                raise
            delay = backoff.next_delay()
            log.warning("%s: %s; retrying in %.1fs (%d/%d)",
                        what, type(exc).__name__, delay, attempt, attempts)
        else:
            if not is_transient(resp) or attempt == attempts:
                return resp
            delay = retry_delay(resp, backoff)
            log.warning("%s: %s (HTTP %s); retrying in %.1fs (%d/%d)",
                        what, resp, http_status(resp), delay, attempt, attempts)
        await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class RetryPolicy:
    """The sleep function and random source every retry of one adapter uses (injected by tests)."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 5

    def backoff(self) -> Backoff:
        return Backoff(rng=self.rng)

    async def call(self, call: Callable[[], Awaitable[T]], *, what: str, attempts: int | None = None) -> T:
        return await with_retries(call, what=what, attempts=attempts or self.attempts, backoff=self.backoff(),
                                  sleep=self.sleep)
