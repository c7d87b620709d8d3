"""The commands every paibot has, with or without a language model: /help, /ask, /search, /status."""

from __future__ import annotations

from collections.abc import Iterable

from bot.commands import Command, CommandCall, CommandRegistry
from bot.i18n import N_
from bot.ports import Tool
from bot.recall import format_hits, memory_answer, recall_filters, search_query


class CoreSkill:
    """Help, explicit questions, memory search and status."""

    def __init__(self, registry: CommandRegistry, answer: object) -> None:
        self._registry = registry
        self._answer = answer  # Member.answer (passed in: the member is built with this registry)

    def commands(self) -> Iterable[Command]:
        return [
            Command("help", N_("What I can do"), self._help),
            Command("ask", N_("Ask me something"), self._ask, usage=N_("/ask <question>")),
            Command("search", N_("Search this group's memory"), self._search, usage=N_("/search <words>"),
                    aliases=("recall",)),
            Command("status", N_("My model, memory and today's usage here"), self._status),
        ]

    def tools(self) -> Iterable[Tool]:
        return []

    async def _help(self, call: CommandCall) -> str:
        s = call.services
        t = await s.translator(call.message.chat.key)
        name = s.name_shown(call.message.chat.key, t)
        lines = [t._("I'm {name}. Mention me (@{name}) or reply to me and I'll answer with this group's context.",
                     name=name)]
        for c in self._registry.commands():
            usage = t._(c.usage) if c.usage else f"/{c.name}"
            admins = t._(" (admins)") if c.admin_only else ""
            lines.append(f"{usage} — {t._(c.description)}{admins}")
        if s.brain is None:
            lines.append(t._("No language model is configured: I answer from the group's memory only."))
        return "\n".join(lines)

    async def _ask(self, call: CommandCall) -> str:
        if not call.args:
            return (await call.services.translator(call.message.chat.key))._("Usage: /ask <question>")
        return await self._answer(call.message, call.args, call.pai)  # type: ignore[operator]

    async def _search(self, call: CommandCall) -> str:
        s = call.services
        t = await s.translator(call.message.chat.key)
        if not call.args:
            return t._("Usage: /search <words>")
        tz = s.tz_for(call.message.chat.key)
        hits = await s.memory.search(call.pai, search_query(call.args), k=8, filters=recall_filters(call.args))
        hits = [h for h in hits if h.record.id != call.message.id]
        if not hits:  # nothing passed the memory's relevance floor: "not found" is the answer
            return memory_answer([], tz, t, with_hint=False)
        return t._("Found in this group's memory:") + "\n" + "\n".join(format_hits(hits, tz, t, limit=8))

    async def _status(self, call: CommandCall) -> str:
        s = call.services
        key = call.message.chat.key
        t = await s.translator(key)
        model = s.settings.llm.model or t._("none (memory answers only)")
        used = s.state.tokens_today(key)
        budget = s.settings.limits.daily_tokens_per_group
        return t._("Model: {model}\nTokens used here today: {used} of {budget}", model=model, used=used, budget=budget)
