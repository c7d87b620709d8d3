"""The composition root: the one place that wires concrete parts (memory, LLM, adapters) into the core.

    App(settings).start()
      lock the data directory -> open state (inbox) and memory -> brain (if a model is configured)
      -> command registry and skills -> member pipeline -> inbox worker
      -> adapters, each under a supervisor (bot.supervisor), until each first attempt has an outcome
      -> background services
    App.stop()
      intake closes -> adapters still connecting stop trying -> background -> worker drains (adapters
      still up to deliver replies) -> adapters -> memory, state, lock

An adapter whose platform cannot be reached keeps connecting in the background (capped, jittered
backoff) while the others serve; events and replies of its platform wait in the inbox until it is
connected (``Services.unavailable``). An adapter the platform refuses (a rejected token) stops with the
operator's instruction; start-up, and ``run_forever``, end with ``AdapterConfigError`` only once no
adapter is left running or connecting.

Adapters, skills and tool sources are plugins (``bot.plugins``), found through entry points unless a catalog
is given; this module names none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from bot import plugins as plugin_api
from bot.admission import Admission
from bot.app.datadir import make_private
from bot.app.metrics import MeteredLedger, Metrics
from bot.app.metrics_http import MetricsServer, remove_status_file, write_status_file
from bot.clock import SystemClock
from bot.commands import CommandRegistry, Skill
from bot.config import Settings
from bot.core_commands import CoreSkill
from bot.erasure import memory_eraser
from bot.errors import AdapterConfigError
from bot.intake import IntakePolicy
from bot.limits import RateLimiter
from bot.member import Member
from bot.middlewares import default_chains
from bot.pais import PaiDirectory
from bot.people import People
from bot.plugins import PluginCatalog, SkillEnv, SkillSet, ToolEnv, ToolProvider
from bot.ports import AdapterEnv, ChatAdapter, Clock, LanguageModel, MemoryStore
from bot.relay import Relay
from bot.runtime import InboxWorker
from bot.services import Services
from bot.skills.resources import SkillResources
from bot.state import StateDB
from bot.supervisor import RUNNING, STOPPED, AdapterSupervisor

log = logging.getLogger("paibot.app")


class App:
    """One running paibot. ``llm``/``memory``/``adapters``/``skills`` may be injected (tests); otherwise they
    are built from the settings: litellm when ``llm.model`` is set (else the no-model mode), the configured
    memory backend, every enabled adapter plugin and every enabled skill plugin of ``plugins`` (default: the
    installed ones, ``bot.plugins.discover``)."""

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
        plugins: PluginCatalog | None = None,
        connect_clock: Clock | None = None,
    ) -> None:
        """``connect_clock`` times the waits between connection attempts (tests pass one they control)."""
        self.settings = settings
        self._plugins = plugins
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
        self._connect_clock = connect_clock or SystemClock()
        self._supervisors: list[AdapterSupervisor] = []
        self._no_adapter_left = asyncio.Event()
        self._background: list[Any] = []
        self._warmup: asyncio.Future[Any] | None = None
        self._tool_providers: list[ToolProvider] = []
        self.relay: Relay | None = None
        self.skill_sets: dict[str, SkillSet] = {}
        self.shared = SkillResources(settings.data_path)
        self.metrics = Metrics()
        self._metrics_server: MetricsServer | None = None
        self._adapters: dict[str, ChatAdapter] = {}

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        settings = self.settings
        data = settings.data_path
        make_private(data)
        from memory import acquire_data_dir_lock, open_memory

        self._lock = acquire_data_dir_lock(data)
        try:
            await self._start_core(open_memory)
            assert self.worker is not None
            self.worker.start()
            await self._start_adapters()
            await self._serve_metrics()
            for svc in self._background:
                await svc.start()
            if self._llm is None and (settings.llm.model or settings.llm.image_model):
                # litellm takes most of a start-up to import: import it on a worker thread once the bot serves
                from bot.providers.litellm_llm import load_litellm

                self._warmup = asyncio.get_running_loop().run_in_executor(None, load_litellm)
        except BaseException:
            await self.stop()
            raise

    async def _start_core(self, open_memory: Any) -> None:
        settings = self.settings
        policy = IntakePolicy(settings, self.registry.names)
        state = StateDB(settings.data_path / "paibot.db", clock=self._clock.now, policy=policy)
        pruned = await state.kv_prune()  # adapters' expired entries (e.g. old send records)
        if pruned:
            log.info("pruned %d expired adapter entries", pruned)
        if self._memory_in is not None:
            memory = self._memory_in
        else:
            from bot.providers.litellm_llm import load_litellm
            from memory.kinds import KindRules

            memory = await open_memory(settings, load_litellm=load_litellm, kinds=KindRules.of(settings))
        llm = self._llm
        if llm is None and settings.llm.model:
            from bot.providers.litellm_llm import build_language_model

            llm = build_language_model(settings.llm)
        brain = None
        if llm is not None:
            from bot.brain import Brain

            ledger = MeteredLedger(state, self.metrics)
            brain = Brain(llm, settings.llm, clock=self._clock, ledger=ledger, rng=self._rng)
        labels = {name: inst.plugin.label for name, inst in self.plugins.adapters.items() if inst.plugin.label}
        pais = PaiDirectory(settings, state, labels)
        people = People(state)
        await pais.load()
        await people.load()
        self.services = Services(settings, memory, state, self._clock, brain, {}, self._rng, pais=pais, people=people)
        self.relay = Relay.build(self.services)
        self.services.relay = self.relay
        self.services.sent_hooks.append(self.relay.answered)
        # the relay and the links are erasers too: /forget-me deletes the copies the relay posted of her words
        # and her pending link codes
        self.services.erasers += [memory_eraser(memory), state, self.relay, people]
        self.services.telemetry = self.metrics
        self.services.sent_hooks.append(self.metrics.on_sent)
        image_generator = None
        if settings.llm.image_model:
            from bot.providers.litellm_images import LiteLLMImageGenerator
            from bot.providers.litellm_llm import LazyLiteLLM

            image_generator = LiteLLMImageGenerator(settings.llm, LazyLiteLLM())
        self.shared = SkillResources(
            settings.data_path, image_generator=image_generator, erasers=self.services.erasers
        )
        # an answer in flight holds one model call's worth of tokens against the budgets until it is over
        reserve = settings.llm.context_tokens + settings.llm.max_reply_tokens
        limiter = RateLimiter(settings.limits, self._clock.now, state, reserve_tokens=reserve)
        admission = Admission(settings, state, self._clock.now)
        member = Member(self.services, self.registry, default_chains(self.services, limiter), admission)
        self.member = member
        self.registry.add_skill(CoreSkill(self.registry, member.answer))
        for skill in self._skills_in if self._skills_in is not None else self._default_skills():
            self.registry.add_skill(skill)
        await self._start_tool_providers()
        self.worker = InboxWorker(
            state, member.handle, parallel=settings.limits.concurrent_groups,
            reserve=settings.limits.quiet_group_slots, on_handled=self.metrics.handled,
            on_started=self.metrics.started,
        )
        self.metrics.watch(worker=self.worker, state=state, memory=memory)
        await self.relay.start()

    async def _start_tool_providers(self) -> None:
        """Every enabled tool plugin's provider, started (its tools discovered) before any message is
        handled. A provider must not fail its start for one bad source; if it raises anyway, the bot
        starts without it."""
        env = ToolEnv(bot_name=self.settings.bot.name, data_dir=self.settings.data_path)
        for name, inst in self.plugins.tools.items():
            cfg = self.settings.tools.get(name) or inst.plugin.settings()
            if not cfg.enabled:
                continue
            provider = inst.plugin.create(cfg, env)
            try:
                await provider.start()
            except Exception:
                log.exception("the %s tools could not start; going on without them", name)
                with contextlib.suppress(Exception):
                    await provider.stop()
                continue
            self._tool_providers.append(provider)
            self.registry.add_tool_source(provider)

    @property
    def plugins(self) -> PluginCatalog:
        if self._plugins is None:
            self._plugins = plugin_api.discover()
        return self._plugins

    def _default_skills(self) -> list[Skill]:
        """Every enabled skill plugin, in /help order. A store a skill opened on the shared resources runs
        as a background service before that skill's own (so it is closed after them)."""
        assert self.services is not None
        skills: list[Skill] = []
        installed = sorted(self.plugins.skills.items(), key=lambda kv: (kv[1].plugin.order, kv[0]))
        for name, inst in installed:
            cfg = self.settings.skills.get(name) or inst.plugin.settings()
            if not cfg.enabled:
                continue
            opened = len(self.shared.opened)
            built = inst.plugin.build(SkillEnv(cfg, self.services, self.registry, self.shared))
            self.skill_sets[name] = built
            skills.extend(built.skills)
            self._background.extend(self.shared.opened[opened:])
            self._background.extend(built.background)
        return skills

    def skill(self, name: str) -> Any:
        """The main object of the skill plugin ``name`` (its first ``Skill``), e.g. to inspect its store."""
        return self.skill_sets[name].skills[0]

    @property
    def background(self) -> list[Any]:
        """The background services (skills' schedulers and stores), in start order."""
        return list(self._background)

    async def _start_adapters(self) -> None:
        """Start every adapter under its supervisor, all at once; return when each first attempt has an
        outcome. The inbox worker is already running: events of a platform still connecting (pending since
        a crash) wait for it (``PlatformUnavailable``) and are retried as soon as it connects."""
        assert self.services is not None
        adapters = self._adapters_in
        if adapters is None:
            adapters = self._build_adapters()
        self._adapters = dict(adapters)
        if not adapters:
            log.warning("no adapter is enabled in the config: nobody can talk to the bot")
            return
        for name, adapter in adapters.items():
            platform = getattr(adapter, "platform", None) or adapter.name
            label = getattr(adapter, "label", "")
            if isinstance(label, str) and label:
                self.services.pais.labels[platform] = label
            if callable(getattr(adapter, "erase", None)):  # a platform keeping messages itself (the web group)
                self.services.erasers.append(adapter)  # type: ignore[arg-type]
            sup = AdapterSupervisor(
                name, adapter, self.services.state, clock=self._connect_clock, rng=self._rng,
                on_change=lambda s, p=platform: self._adapter_changed(s, p),
            )
            self.services.unavailable[platform] = sup.reason
            self._supervisors.append(sup)
            sup.launch()
        await asyncio.gather(*(s.settled.wait() for s in self._supervisors))
        if self._no_adapter_left.is_set():
            raise AdapterConfigError(self._why_no_adapter())

    def _adapter_changed(self, sup: AdapterSupervisor, platform: str) -> None:
        services = self.services
        if services is None:
            return
        if sup.state == RUNNING:
            services.unavailable.pop(platform, None)
            services.adapters[platform] = sup.adapter
            if self.worker is not None:
                self.worker.wake()  # replies that waited for this platform go out now
            if self.relay is not None:
                self.relay.wake()
        else:
            services.adapters.pop(platform, None)
            services.unavailable[platform] = sup.reason
        if all(s.state == STOPPED for s in self._supervisors):
            self._no_adapter_left.set()

    def _why_no_adapter(self) -> str:
        stopped = [s for s in self._supervisors if s.state == STOPPED]
        if len(stopped) == 1:
            return stopped[0].reason
        return "no adapter is left running:\n" + "\n".join(f"- {s.name}: {s.reason}" for s in stopped)

    def _build_adapters(self) -> dict[str, ChatAdapter]:
        """One adapter per enabled adapter plugin (a section left out of config.yaml has its defaults)."""
        env = AdapterEnv(
            bot_name=self.settings.bot.name,
            bot_aliases=self.settings.bot.aliases,
            data_dir=self.settings.data_path,
            commands=self.registry.infos(),
            max_attachment_bytes=self.settings.limits.max_attachment_bytes,
            command_prefixes=self.settings.triggers.command_prefixes,
            metrics=self.metrics if self.settings.metrics.enabled else None,
        )
        assert self.services is not None
        out: dict[str, ChatAdapter] = {}
        for name, inst in self.plugins.adapters.items():
            cfg = self.settings.adapters.get(name) or inst.plugin.settings()
            if cfg.enabled:
                own = dataclasses.replace(env, store=self.services.state.store(name))
                out[name] = inst.plugin.create(cfg, own)
        return out

    async def _serve_metrics(self) -> None:
        """The metrics go out on the port of an adapter that serves them (the web group), else on
        ``metrics.port`` (when set); where is written down for ``paibot status`` (``bot.app.metrics_http``)."""
        m = self.settings.metrics
        if not m.enabled:
            return
        serving = [(n, a) for n, a in self._adapters.items() if getattr(a, "serves_metrics", False)]
        if serving:
            name, adapter = serving[0]
            url, token_from = str(getattr(adapter, "metrics_url", "")), f"adapters.{name}"
        elif not m.port:
            log.info("metrics are not served: no adapter serves them and metrics.port is 0")
            return
        else:
            self._metrics_server = MetricsServer(self.metrics, m.host, m.port, m.access_token)
            await self._metrics_server.start()
            url, token_from = self._metrics_server.url, "metrics"
        write_status_file(self.settings.data_path, url, token_from)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop taking work, let in-flight work finish (or return to the inbox), flush and release the lock.

        The worker stops before the adapters: in-flight replies still have their platform to go to (an
        adapter stopped first would fail them and count a spurious attempt towards the dead-letter table).
        Intake closes first: the inbox refuses new events, so adapters do not acknowledge them and they
        arrive again after the restart."""
        if self.services is not None:
            self.services.state.close_intake()
        for sup in self._supervisors:
            await sup.cancel()  # no point connecting any more
        for svc in reversed(self._background):
            with contextlib.suppress(Exception):
                await svc.stop()
        if self.worker is not None:
            await self.worker.stop(grace_s)
            self.worker = None
        if self.relay is not None:
            await self.relay.stop(grace_s)  # after the worker: its last answers queue copies
            self.relay = None
        for provider in reversed(self._tool_providers):
            try:
                await provider.stop()
            except Exception:
                log.exception("stopping a tool provider failed")
        self._tool_providers.clear()
        for sup in reversed(self._supervisors):
            await sup.stop()
        self._supervisors.clear()
        if self._metrics_server is not None:
            await self._metrics_server.stop()
            self._metrics_server = None
        remove_status_file(self.settings.data_path)
        if self.services is not None:
            with contextlib.suppress(Exception):
                await self.services.memory.close()
            await self.services.state.flush()
            self.services.state.close()
            self.services = None
        if self._warmup is not None:
            with contextlib.suppress(Exception):  # an import cut short by the stop is nobody's concern
                await asyncio.wait_for(asyncio.shield(self._warmup), timeout=30)
            self._warmup = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every event received so far has been handled and every relay job it queued is done
        (for tests)."""
        assert self.worker is not None
        await self.worker.drain(timeout)
        if self.relay is not None and self.relay.worker is not None:
            await self.relay.worker.drain(timeout)
            await self.worker.drain(timeout)

    async def run_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT, or until no adapter is left (``AdapterConfigError``
        with the operator's instruction); then stop gracefully. A signal during a slow start (a platform
        that accepts connections but does not answer) ends the start at once."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        signalled = asyncio.create_task(stop.wait(), name="wait-for-signal")
        starting = asyncio.create_task(self.start(), name="app-start")
        try:
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                log.info("stopping before start-up finished")
                return  # the start is cancelled below; it releases what it began
            starting.result()
            log.info("%s is running", self.settings.bot.name)
            gone = asyncio.create_task(self._no_adapter_left.wait(), name="wait-for-adapters")
            why = ""
            try:
                await asyncio.wait({signalled, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                await asyncio.gather(gone, return_exceptions=True)
                if self._no_adapter_left.is_set() and not stop.is_set():
                    why = self._why_no_adapter()
                log.info("stopping")
                await self.stop()
            if why:
                raise AdapterConfigError(why)
        finally:
            for task in (starting, signalled):
                task.cancel()
            await asyncio.gather(starting, signalled, return_exceptions=True)
