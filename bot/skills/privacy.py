"""Privacy a member controls, and per-group retention.

    /forget-me                   removes your messages in this group from the transcript and every index
    /what-do-you-know-about-me   (or /whatdoyouknow) what is stored about you here: counts, dates, recent lines
    /optout · /optin             stop / resume recording your messages in this group

Everything is scoped to the caller (their immutable user id) and to the group the command came from.
Opt-out is the core's group_kv flag ``optout:<user_id>`` that the member pipeline checks before recording.
Retention: a background loop (hourly by the injected clock) removes records older than the group's
``retention_days`` (``/settings retention_days 90``, ``groups.<key>.retention_days`` or
``memory.retention_days``) from the group's memory, through ``MemoryStore.recent``/``forget``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from bot.commands import Command, CommandCall, Observation
from bot.context import fmt_time
from bot.i18n import N_
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import MemoryRecord, Tool
from bot.services import Services
from bot.skills.duejobs import DueLoop
from bot.skills.resources import SkillResources
from bot.skills.skilldb import SkillDB

log = logging.getLogger("paibot.skills.privacy")

SCAN_LIMIT = 20_000  # records looked at for /what-do-you-know-about-me
PURGE_EVERY = timedelta(hours=1)
PAGE = 500


class PrivacySkill:
    def __init__(
        self, services: Services, db: SkillDB, *, shared: SkillResources | None = None, poll_s: float = 60.0
    ) -> None:
        self.s = services
        self.db = db
        self._shared = shared
        self.loop = DueLoop("retention", self.run_due, services.clock, poll_s=poll_s, rng=services.rng)
        self._last_purge: datetime | None = None

    def commands(self) -> Iterable[Command]:
        return [
            Command(
                "forget_me",
                N_("Remove your messages in this group from my memory"),
                self._forget,
                usage="/forget-me",
                aliases=("forgetme",),
            ),
            Command(
                "what_do_you_know_about_me",
                N_("What I keep about you in this group"),
                self._know,
                usage="/what-do-you-know-about-me",
                aliases=("whatdoyouknow",),
            ),
            Command("optout", N_("Stop recording your messages in this group"), self._optout),
            Command("optin", N_("Resume recording your messages in this group"), self._optin),
        ]

    def tools(self) -> Iterable[Tool]:
        return []  # deliberately no LLM tools: only the member themself, by command, changes their data

    def observers(self) -> list[Any]:
        return [self._note_group]

    async def start(self) -> None:
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def _note_group(self, obs: Observation) -> None:
        await self.db.note_group(obs.message.chat)

    # ----------------------------------------------------------------- commands

    async def _forget(self, call: CommandCall) -> str:
        user = call.message.author.user_id
        removed = await self.s.memory.forget(call.pai, author_id=user)
        # The files and images skills' log of posted files, if one of them opened it.
        attachments = self._shared.attachments_if_open if self._shared is not None else None
        if attachments is not None:
            await attachments.forget_author(call.message.chat.key, user)
        t = await self.s.translator(call.message.chat.key)
        return t.ngettext(
            "Done: I removed {n} of your messages from this group's memory (the transcript and the search "
            "indexes). New messages are still recorded; /optout stops that.",
            "Done: I removed {n} of your messages from this group's memory (the transcript and the search "
            "indexes). New messages are still recorded; /optout stops that.",
            removed,
        )

    async def _optout(self, call: CommandCall) -> str:
        await self.s.state.group_set(call.message.chat.key, f"optout:{call.message.author.user_id}", "1")
        t = await self.s.translator(call.message.chat.key)
        return t._(
            "OK: from now on I don't record your messages in this group (I still answer you). What I kept "
            "before stays until you use /forget-me. /optin turns recording back on."
        )

    async def _optin(self, call: CommandCall) -> str:
        await self.s.state.group_delete(call.message.chat.key, f"optout:{call.message.author.user_id}")
        return (await self.s.translator(call.message.chat.key))._("OK: I record your messages in this group again.")

    async def _know(self, call: CommandCall) -> str:
        msg = call.message
        key, user = msg.chat.key, msg.author.user_id
        await self.s.load_group(key)
        t = await self.s.translator(key)
        tz = self.s.tz_for(key)
        mine, scanned_all = await self._records_of(call.pai, user, skip_id=msg.id)
        opted_out = bool(await self.s.state.group_get(key, f"optout:{user}"))
        lines = [t._("What I keep about you in this group:")]
        if not mine:
            lines.append(t._("• No messages of yours are stored here."))
        else:
            first, last = fmt_time(mine[0].sent_at, tz), fmt_time(mine[-1].sent_at, tz)
            if scanned_all:
                lines.append(t.ngettext("• {n} message, from {first} to {last}", "• {n} messages, from {first} to {last}",
                                        len(mine), first=first, last=last))
            else:
                lines.append(t._("• at least {n} messages, from {first} to {last}", n=len(mine), first=first, last=last))
            lines.append(t._("• The most recent:"))
            lines += [f"  [{fmt_time(r.sent_at, tz)}] {_short(r.text)}" for r in mine[-3:]]
        days = int(self.s.group_setting(key, "retention_days") or 0)
        if days > 0:
            lines.append(t.ngettext("• Kept for {n} day", "• Kept for {n} days", days))
        else:
            lines.append(t._("• Kept until you or an admin remove it"))
        if opted_out:
            lines.append(t._("• Recording: off (you opted out; /optin)"))
        else:
            lines.append(t._("• Recording: on (/optout stops it)"))
        lines.append(t._("Remove your messages with /forget-me."))
        return "\n".join(lines)

    async def _records_of(self, pai: str, user: str, skip_id: str) -> tuple[list[MemoryRecord], bool]:
        """The member's records (oldest first) and whether the whole memory was scanned."""
        seen: set[str] = set()
        mine: list[MemoryRecord] = []
        before: datetime | None = None
        while len(seen) < SCAN_LIMIT:
            batch = [r for r in await self.s.memory.recent(pai, PAGE, before=before) if r.id not in seen]
            if not batch:
                return sorted(mine, key=lambda r: r.sent_at), True
            seen.update(r.id for r in batch)
            mine += [r for r in batch if r.author_id == user and not r.is_bot and r.id != skip_id]
            before = min(r.sent_at for r in batch)
        return sorted(mine, key=lambda r: r.sent_at), False

    # ----------------------------------------------------------------- retention

    async def run_due(self, now: datetime) -> int:
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return 0
        self._last_purge = now
        keys = {c.key for c in await self.db.groups()} | set(self.s.settings.groups)
        removed = 0
        for key in sorted(keys):
            await self.s.load_group(key)
            days = int(self.s.group_setting(key, "retention_days") or 0)
            if days > 0:
                removed += await self.purge_group(key, now - timedelta(days=days))
        if removed:
            log.info("retention removed %d old records", removed)
        return removed

    async def purge_group(self, group_key: str, cutoff: datetime) -> int:
        """Forget the group's records sent before ``cutoff`` (other chats of a shared pai keep theirs)."""
        pai = self.s.settings.pai_of(group_key)
        removed, before = 0, cutoff
        seen: set[str] = set()
        for _ in range(10_000):
            page = await self.s.memory.recent(pai, PAGE, before=before)
            batch = [r for r in page if r.sent_at < cutoff and r.id not in seen]
            if not batch:
                break
            seen.update(r.id for r in batch)
            doomed = [r.id for r in batch if r.chat_key == group_key]
            if doomed:
                removed += await self.s.memory.forget(pai, ids=doomed)
            before = min(r.sent_at for r in batch)
        return removed


def _short(text: str, width: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def build(env: SkillEnv) -> SkillSet:
    skill = PrivacySkill(env.services, env.shared.db, shared=env.shared)
    return SkillSet([skill], [skill])


plugin = SkillPlugin(
    name="privacy",
    build=build,
    order=80,
    description="/optout, /forget-me and what the member keeps about you",
)
