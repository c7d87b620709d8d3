"""Image work in a small pool of processes with a memory ceiling, so a burst of edits of huge images never
grows the bot's own memory.

Decoding a 6300x6300 image takes a few hundred megabytes, and an allocator rarely gives freed memory back to
the system: done on the bot's threads, a burst of edits left the bot ~1.2 GB larger for good. Here every
image is decoded in a worker process of its own (``forkserver``: a small, fresh interpreter forks it, not
the bot), each worker does one job and exits, so its memory goes back to the system when the job is done.
At most ``workers`` jobs run at once (others wait their turn), and each worker's address space is capped at
``memory_mb`` (``RLIMIT_AS``): an image that needs more is refused with a short explanation instead of
taking the machine's memory. ``image_ops.MAX_PIXELS`` refuses oversized images before any pixel is decoded.
A moment after the last job, the bot's own heap gives its free memory back (the image bytes it sent and
received are tens of megabytes each; glibc would keep them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from bot.i18n import N_, Text
from bot.skills.image_ops import ImageRejected

log = logging.getLogger("paibot.skills.images")

T = TypeVar("T")
TRIM_AFTER_S = 1.0
PRELOAD = ["bot.skills.image_ops", "PIL.Image", "PIL.ImageOps", "PIL.ImageDraw", "PIL.ImageFont", "PIL.PngImagePlugin",
           "PIL.JpegImagePlugin"]


def _limit_memory(memory_mb: int) -> None:
    """In the worker, before any job: cap its address space."""
    import resource

    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class ImagePool:
    """``await pool.run(fn, *args)`` runs a picklable ``fn`` in a worker process. Background service of the
    images skill (``start``/``stop``); with ``workers: 0`` work runs on a thread instead (tests, platforms
    without ``fork``)."""

    def __init__(self, workers: int = 2, memory_mb: int = 1024) -> None:
        self.workers = workers
        self.memory_mb = memory_mb
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(max(1, workers))
        self._in_flight = 0
        self._trim: asyncio.TimerHandle | None = None

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_limit_memory, initargs=(self.memory_mb,),
                max_tasks_per_child=1,
            )
        return self._executor

    async def start(self) -> None:
        return None  # the pool starts on its first job: a bot that edits no image never forks

    async def stop(self) -> None:
        if self._trim is not None:
            self._trim.cancel()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.workers <= 0:
            return await asyncio.to_thread(fn, *args)
        self._in_flight += 1
        try:
            async with self._slots:
                return await self._submit(fn, *args)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._trim_later()

    def _trim_later(self) -> None:
        """Once idle for a moment (the edited image sent, the caller done with the bytes), give memory back."""
        if self._trim is not None:
            self._trim.cancel()
        loop = asyncio.get_running_loop()
        self._trim = loop.call_later(TRIM_AFTER_S, lambda: loop.run_in_executor(None, give_back_memory))

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.wrap_future(self._pool().submit(fn, *args))
        except MemoryError as exc:
            log.warning("an image needed more than the %d MB a worker may use", self.memory_mb)
            raise ImageRejected(Text(N_("the image is too large to edit here"))) from exc
        except BrokenProcessPool as exc:
            log.warning("an image worker died (%s); starting a new pool", exc)
            await self.stop()
            raise ImageRejected(Text(N_("the image could not be processed"))) from exc


def give_back_memory() -> None:
    """Return the heap's free memory to the system (glibc's ``malloc_trim``; elsewhere nothing). The image
    bytes sent to workers and the edited images coming back are tens of megabytes each: glibc keeps freed
    blocks of that size in its heaps, so without this the bot stays that much larger after a burst."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
