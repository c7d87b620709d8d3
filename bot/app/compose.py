"""The composition root: the one place that wires concrete parts (memory, LLM, adapters) into the core.

    App(settings).start()
      lock the data directory -> open state (inbox) and memory -> brain (if a model is configured)
      -> command registry and skills -> member pipeline -> adapters (intake) -> inbox worker, background
    App.stop()
      intake closes -> background -> worker drains (adapters still up to deliver replies) -> adapters
      -> memory, state, lock
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from bot.app.datadir import make_private
from bot.clock import SystemClock
from bot.commands import CommandRegistry, Skill
from bot.config import Settings
from bot.core_commands import CoreSkill
from bot.erasure import memory_eraser
from bot.errors import AdapterConfigError
from bot.intake import IntakePolicy
from bot.limits import RateLimiter
from bot.member import Member
from bot.ports import AdapterEnv, ChatAdapter, Clock, LanguageModel, MemoryStore
from bot.runtime import InboxWorker
from bot.services import Services
from bot.state import StateDB

log = logging.getLogger("paibot.app")


class App:
    """One running paibot. ``llm``/``memory``/``adapters`` may be injected (tests); otherwise they are built
    from the settings: litellm when ``llm.model`` is set (else the no-model mode), the configured memory
    backend, and every enabled adapter."""

    def __init__(
        self,
        settings: Settings,
        *,
        llm: LanguageModel | None = None,
        adapters: Mapping[str, ChatAdapter] | None = None,
        clock: Clock | None = None,
        memory: MemoryStore | None = None,
        skills: Sequence[Skill] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._llm = llm
        self._adapters_in = dict(adapters) if adapters is not None else None
        self._clock = clock or SystemClock()
        self._memory_in = memory
        self._skills_in = skills
        self._rng = rng or random.Random()
        self._lock: Any = None
        self.services: Services | None = None
        self.worker: InboxWorker | None = None
        self.registry = CommandRegistry()
        self._started: list[ChatAdapter] = []
        self._background: list[Any] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        settings = self.settings
        data = settings.data_path
        make_private(data)
        from memory import acquire_data_dir_lock, open_memory

        self._lock = acquire_data_dir_lock(data)
        try:
            await self._start_core(open_memory)
            await self._start_adapters()
            await self._start_work()
        except BaseException:
            await self.stop()
            raise

    async def _start_core(self, open_memory: Any) -> None:
        settings = self.settings
        policy = IntakePolicy(settings, self.registry.names)
        state = StateDB(settings.data_path / "paibot.db", clock=self._clock.now, policy=policy)
        if self._memory_in is not None:
            memory = self._memory_in
        else:
            from bot.providers.litellm_llm import load_litellm

            memory = await open_memory(settings, load_litellm=load_litellm)
        llm = self._llm
        if llm is None and settings.llm.model:
            from bot.providers.litellm_llm import build_language_model

            llm = build_language_model(settings.llm)
        brain = None
        if llm is not None:
            from bot.brain import Brain

            brain = Brain(llm, settings.llm, clock=self._clock, ledger=state, rng=self._rng)
        self.services = Services(settings, memory, state, self._clock, brain, {}, self._rng)
        self.services.erasers += [memory_eraser(memory), state]
        if settings.llm.image_model:
            from bot.providers.litellm_llm import load_litellm
            from bot.providers.litellm_images import LiteLLMImageGenerator

            self.services.extras["image_generator"] = LiteLLMImageGenerator(settings.llm, load_litellm())
        limiter = RateLimiter(settings.limits, self._clock.now, state)
        member = Member(self.services, self.registry, limiter)
        self.member = member
        self.registry.add_skill(CoreSkill(self.registry, member.answer))
        for skill in self._skills_in if self._skills_in is not None else self._default_skills():
            self.registry.add_skill(skill)
        self.worker = InboxWorker(state, member.handle)

    async def _start_work(self) -> None:
        """Handle the inbox and run background services only once every adapter is up: an event left
        pending by a crash is handled at once, and its reply needs its platform's adapter to be there."""
        assert self.worker is not None
        self.worker.start()
        for svc in self._background:
            await svc.start()

    def _default_skills(self) -> list[Skill]:
        from bot.skills import default_skills

        assert self.services is not None
        skills, background = default_skills(self.services, self.registry)
        self._background.extend(background)
        return skills

    async def _start_adapters(self) -> None:
        assert self.services is not None
        adapters = self._adapters_in
        if adapters is None:
            adapters = self._build_adapters()
        env_sink = self.services.state
        for name, adapter in adapters.items():
            log.info("starting the %s adapter", name)
            try:
                await adapter.start(env_sink)
            except AdapterConfigError:
                raise
            except Exception as exc:
                raise AdapterConfigError(f"the {name} adapter could not start: {exc}") from exc
            self._started.append(adapter)
            self.services.adapters[getattr(adapter, "platform", None) or adapter.name] = adapter
            if callable(getattr(adapter, "erase", None)):  # a platform keeping messages itself (the web group)
                self.services.erasers.append(adapter)  # type: ignore[arg-type]
        if not adapters:
            log.warning("no adapter is enabled in the config: nobody can talk to the bot")

    def _build_adapters(self) -> dict[str, ChatAdapter]:
        from adapters import adapter_factory

        env = AdapterEnv(
            bot_name=self.settings.bot.name,
            data_dir=self.settings.data_path,
            commands=self.registry.infos(),
            max_attachment_bytes=self.settings.limits.max_attachment_bytes,
        )
        out: dict[str, ChatAdapter] = {}
        for name in ("web", "telegram", "discord", "matrix"):
            if getattr(self.settings.adapters, name).enabled:
                out[name] = adapter_factory(name)(self.settings, env)
        return out

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking work, let in-flight work finish (or return to the inbox), flush and release the lock.

        The worker stops before the adapters: in-flight replies still have their platform to go to (an
        adapter stopped first would fail them and count a spurious attempt towards the dead-letter table).
        Intake closes first: the inbox refuses new events, so adapters do not acknowledge them and they
        arrive again after the restart."""
        if self.services is not None:
            self.services.state.close_intake()
        for svc in reversed(self._background):
            with contextlib.suppress(Exception):
                await svc.stop()
        if self.worker is not None:
            await self.worker.stop(grace_s)
            self.worker = None
        for adapter in reversed(self._started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping the %s adapter failed", adapter.name)
        self._started.clear()
        if self.services is not None:
            with contextlib.suppress(Exception):
                await self.services.memory.close()
            await self.services.state.flush()
            self.services.state.close()
            self.services = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every event received so far has been handled (for tests)."""
        assert self.worker is not None
        await self.worker.drain(timeout)

    async def run_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT; then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        log.info("%s is running", self.settings.bot.name)
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await self.stop()
