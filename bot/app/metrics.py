"""The bot's metrics in the Prometheus format (prometheus-client, with a registry of its own per App).

What is counted as it happens (hooks the composition root wires):

    paibot_messages_received_total{platform}     events taken from the inbox and handled (the worker)
    paibot_messages_sent_total{platform}         messages the bot sent (Services.sent_hooks)
    paibot_answer_latency_seconds{platform}      from a message being sent to the bot's reply reaching the
                                                 platform (a histogram; streamed answers: the first message)
    paibot_refusals_total{reason}                answers refused by a limit, a budget, the admission of new
                                                 groups ("member rate", "bot budget", "new groups", ...)
    paibot_model_calls_total{model}              model calls, and their tokens and cost as the provider
    paibot_model_tokens_total{model,kind}        reported them (kind: prompt | completion)
    paibot_model_cost_usd_total{model}
    paibot_dead_letters_total                    events moved to the dead-letter state since the start
    paibot_lane_wait_seconds{lane}               how long events waited in their chat's lane (a histogram;
                                                 lane="quiet": they came to an empty lane, else "backlog")

and what is read when the metrics are asked for (gauges):

    paibot_lane_queue_depth                      events waiting in the per-chat lanes
    paibot_lane_queue_deepest                    the longest lane's queue
    paibot_lanes_active                          chats with work queued or running
    paibot_events_in_flight                      events being handled now (at most limits.concurrent_groups)
    paibot_inbox_pending                         events committed to the inbox and not handled yet
    paibot_inbox_dead_letters                    events in the dead-letter state
    paibot_memory_index_lag                      records remembered but not yet in the search index
    paibot_tokens_today, paibot_cost_usd_today   all groups together, today (UTC)

No label names a group or a member: an outsider opening groups cannot grow the metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.events import Message, Outgoing, SentRef
from bot.ports import IndexLag, Usage, UsageLedger

log = logging.getLogger("paibot.metrics")

LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Implements ``bot.ports.Telemetry`` (for the core) and ``bot.ports.MetricsSource`` (for whoever serves
    ``/metrics``). ``watch`` gives it the parts whose figures are read at each ``render``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("paibot_messages_received", "Events taken from the inbox and handled.",
                                ["platform"], registry=r)
        self.sent = Counter("paibot_messages_sent", "Messages the bot sent.", ["platform"], registry=r)
        self.latency = Histogram(
            "paibot_answer_latency_seconds", "From a message being sent to the bot's reply reaching the platform.",
            ["platform"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.refusals = Counter("paibot_refusals", "Answers refused by a limit, budget or admission.", ["reason"],
                                registry=r)
        self.calls = Counter("paibot_model_calls", "Model calls.", ["model"], registry=r)
        self.tokens = Counter("paibot_model_tokens", "Model tokens as reported by the provider.",
                              ["model", "kind"], registry=r)
        self.cost = Counter("paibot_model_cost_usd", "Model cost in USD as priced by litellm.", ["model"],
                            registry=r)
        self.dead = Counter("paibot_dead_letters", "Events moved to the dead-letter state.", registry=r)
        self.lane_wait = Histogram(
            "paibot_lane_wait_seconds", "How long events waited in their chat's lane before being handled; "
            "lane=quiet: events that came to an empty lane, lane=backlog: the others.", ["lane"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0), registry=r,
        )
        self.queue = Gauge("paibot_lane_queue_depth", "Events waiting in the per-chat lanes.", registry=r)
        self.deepest = Gauge("paibot_lane_queue_deepest", "The longest lane's queue.", registry=r)
        self.lanes = Gauge("paibot_lanes_active", "Chats with work queued or running.", registry=r)
        self.in_flight = Gauge("paibot_events_in_flight", "Events being handled now.", registry=r)
        self.pending = Gauge("paibot_inbox_pending", "Events in the inbox not handled yet.", registry=r)
        self.dead_now = Gauge("paibot_inbox_dead_letters", "Events in the dead-letter state.", registry=r)
        self.index_lag = Gauge("paibot_memory_index_lag", "Records remembered but not yet in the search index.",
                               registry=r)
        self.tokens_today = Gauge("paibot_tokens_today", "Model tokens today (UTC), all groups.", registry=r)
        self.cost_today = Gauge("paibot_cost_usd_today", "Model cost in USD today (UTC), all groups.", registry=r)
        self._worker: Any = None
        self._state: Any = None
        self._memory: Any = None

    def watch(self, *, worker: Any = None, state: Any = None, memory: Any = None) -> None:
        """The inbox worker (its lanes), the state (inbox and usage) and the memory (``IndexLag``)."""
        self._worker, self._state, self._memory = worker, state, memory

    # ----------------------------------------------------------------- Telemetry and hooks

    def answered(self, platform: str, seconds: float) -> None:
        self.latency.labels(platform).observe(seconds)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def started(self, waited_s: float, quiet: bool) -> None:
        """The worker's ``on_started``."""
        self.lane_wait.labels("quiet" if quiet else "backlog").observe(waited_s)

    def handled(self, event: Message, dead: bool) -> None:
        """The worker's ``on_handled``."""
        self.received.labels(event.chat.platform).inc()
        if dead:
            self.dead.inc()

    async def on_sent(self, out: Outgoing, ref: SentRef) -> None:
        """A ``Services.sent_hooks`` entry."""
        self.sent.labels(out.chat.platform).inc()

    def model_usage(self, model: str, usage: Usage) -> None:
        name = model or "default"
        self.calls.labels(name).inc()
        self.tokens.labels(name, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(name, "completion").inc(usage.completion_tokens)
        self.cost.labels(name).inc(usage.cost_usd)

    # ----------------------------------------------------------------- MetricsSource

    async def render(self) -> bytes:
        await self._refresh()
        return generate_latest(self.registry)

    async def _refresh(self) -> None:
        try:
            if self._worker is not None:
                lanes = self._worker.lanes
                self.queue.set(lanes.queued)
                self.deepest.set(lanes.deepest)
                self.lanes.set(lanes.lanes)
                self.in_flight.set(lanes.running)
            if self._state is not None:
                counts = await self._state.counts()
                self.pending.set(counts.get("pending", 0))
                self.dead_now.set(counts.get("dead", 0))
                today = self._state.bot_today()
                self.tokens_today.set(today.prompt_tokens + today.completion_tokens)
                self.cost_today.set(today.cost_usd)
            if isinstance(self._memory, IndexLag):
                self.index_lag.set(await self._memory.index_lag())
        except Exception:  # a figure that cannot be read now must not cost the others
            log.warning("could not read every figure for the metrics", exc_info=True)


class MeteredLedger:
    """A ``UsageLedger`` that also counts each model call in the metrics (the brain's ledger)."""

    def __init__(self, ledger: UsageLedger, metrics: Metrics) -> None:
        self._ledger = ledger
        self._metrics = metrics

    def add_usage(self, group_key: str, model: str, usage: Usage, member_key: str = "") -> None:
        self._metrics.model_usage(model, usage)
        self._ledger.add_usage(group_key, model, usage, member_key)

    def tokens_today(self, group_key: str) -> int:
        return self._ledger.tokens_today(group_key)

    def member_tokens_today(self, member_key: str) -> int:
        return self._ledger.member_tokens_today(member_key)

    def bot_today(self) -> Usage:
        return self._ledger.bot_today()
