"""Privacy a member controls, and per-group retention.

    /forget-me                   removes your messages in this group from the transcript and every index
    /what-do-you-know-about-me   (or /whatdoyouknow) what is stored about you here: counts, dates, recent lines
    /optout · /optin             stop / resume recording your messages in this group

Everything is scoped to the caller (their immutable user id) and to the group the command came from.
Forgetting goes through ``bot.erasure.Forgetter`` to every store that keeps member content (memory, inbox,
reply ledger, skills' stores, the web group's own store): see SECURITY.md's data map. Asked in plain words
("@Pai forget what I said", "忘掉我说过的话") the bot explains and asks for the command: forgetting is
never done on the model's or a sentence's say-so.
Opt-out is the core's group_kv flag ``optout:<user_id>``, checked at intake (``bot.intake``) and before
recording. Retention: a background loop (hourly by the injected clock) forgets what was sent before the
group's ``retention_days`` (``/settings retention_days 90``, ``groups.<key>.retention_days`` or
``memory.retention_days``), everywhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from bot.commands import Command, CommandCall, Observation
from bot.context import fmt_time
from bot.erasure import Forgetter, Report, member_scope
from bot.i18n import N_
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Erasure, MemoryRecord, Tool
from bot.services import Services
from bot.skills.duejobs import DueLoop
from bot.skills.skilldb import SkillDB

log = logging.getLogger("paibot.skills.privacy")

SCAN_LIMIT = 20_000  # records looked at for /what-do-you-know-about-me
PURGE_EVERY = timedelta(hours=1)
PAGE = 500

_FORGET_WORDS = re.compile(
    r"\bforget\s+(?:(?:what|everything|all)\s+(?:that\s+)?i(?:'ve|\s+have)?\s+(?:said|wrote|written|posted|sent)"
    r"|about\s+me|me\b)|\b(?:delete|erase|remove)\s+(?:all\s+)?my\s+(?:messages|data|history)"
    r"|忘[掉记了]\s*(?:我|关于我)|删[掉除]\s*我的(?:消息|记录|数据|聊天)",
    re.IGNORECASE,
)
# Counts of the erasers that repeat the member's messages themselves (not "other items").
# Platforms' in-memory caches ("cached copies") repeat what is counted elsewhere.
_SAME_MESSAGES = frozenset(
    {"messages", "web messages", "queued events", "quotes in queued events", "cached copies", "relayed copies"}
)
_MEMORY_KINDS = frozenset({"messages", "file passages", "image captions", "bot messages", "memory records"})


class PrivacySkill:
    def __init__(self, services: Services, db: SkillDB, *, poll_s: float = 60.0) -> None:
        self.s = services
        self.db = db
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
        return [self._note_group, self._forget_in_words]

    async def start(self) -> None:
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def _note_group(self, obs: Observation) -> None:
        await self.db.note_group(obs.message.chat)

    async def _forget_in_words(self, obs: Observation) -> str | None:
        """"@Pai forget what I said": explain and ask for the command (a sentence never erases anything)."""
        decision = obs.decision
        if not getattr(decision, "speak", False) or getattr(decision, "command", None):
            return None
        if not _FORGET_WORDS.search(getattr(decision, "prompt", "") or obs.message.text):
            return None
        t = await self.s.translator(obs.message.chat.key)
        return t._(
            "I can forget everything you said in this group: your messages, files, image captions, reminders, "
            "to-dos, polls and my own messages that quote you. To confirm, send /forget-me (I don't do it on a "
            "sentence alone, so nobody can make me forget you by accident). /optout stops recording you from "
            "now on."
        )

    # ----------------------------------------------------------------- commands

    async def _forget(self, call: CommandCall) -> str:
        """Forget the caller in this group's pai through every store (``bot.erasure.Forgetter``): from every
        account they linked (``/link``), each in the pai's chats on its own platform (a user id means
        something on its own platform only), one erasure per account. The relay is one of the erasers: the
        copies it posted of her words in the pai's other groups are deleted."""
        msg = call.message
        report = Report()
        forgetter = Forgetter(self.s.erasers)
        for identity in self.s.people.identities(msg.author.key):
            platform, user = identity.split(":", 1)
            pai, chats = member_scope(self.s.settings, msg.chat.key, platform=platform, pais=self.s.pais)
            if not chats:  # the pai has no group on that account's platform: nothing of it is here
                continue
            done = await forgetter.forget(Erasure(pai, chats, author_id=user))
            report.add(done.counts)
            report.failed += done.failed
        messages = report.counts.get("messages", 0)
        other = sum(n for kind, n in report.counts.items() if kind not in _SAME_MESSAGES)
        log.info("forgot a member in %s: %s", msg.chat.key, report.counts)
        t = await self.s.translator(msg.chat.key)
        text = t.ngettext(
            "Done: I removed {n} of your messages from this group's memory (the transcript and the search "
            "indexes) and {other} other items: your files and their text, image captions, reminders, to-dos, "
            "polls and votes, and my own messages that quoted you. New messages are still recorded; /optout "
            "stops that.",
            "Done: I removed {n} of your messages from this group's memory (the transcript and the search "
            "indexes) and {other} other items: your files and their text, image captions, reminders, to-dos, "
            "polls and votes, and my own messages that quoted you. New messages are still recorded; /optout "
            "stops that.",
            messages, other=other,
        )  # fmt: skip
        if report.failed:
            text += "\n" + t._("Some of it could not be removed right now; please send /forget-me again later.")
        return text

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
        accounts = self.s.people.identities(msg.author.key)
        mine, scanned_all = await self._records_of(
            call.pai, {tuple(i.split(":", 1)) for i in accounts}, skip_id=msg.id)  # type: ignore[misc]
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
        if len(accounts) > 1:
            names = [f"{self.s.people.name_of(i) or i.split(':', 1)[1]} "
                     f"({self.s.pais.platform_label(i.split(':', 1)[0], t)})" for i in accounts]
            lines.append(t._("• Your linked accounts (one person for me): {accounts} (/unlink)", accounts=t.join(names)))
        if opted_out:
            lines.append(t._("• Recording: off (you opted out; /optin)"))
        else:
            lines.append(t._("• Recording: on (/optout stops it)"))
        lines.append(t._("Remove your messages with /forget-me."))
        return "\n".join(lines)

    async def _records_of(
        self, pai: str, accounts: set[tuple[str, str]], skip_id: str
    ) -> tuple[list[MemoryRecord], bool]:
        """The records of these accounts (platform, user id), oldest first, and whether the whole memory was
        scanned."""
        seen: set[str] = set()
        mine: list[MemoryRecord] = []
        before: datetime | None = None
        while len(seen) < SCAN_LIMIT:
            batch = [r for r in await self.s.memory.recent(pai, PAGE, before=before) if r.id not in seen]
            if not batch:
                return sorted(mine, key=lambda r: r.sent_at), True
            seen.update(r.id for r in batch)
            mine += [r for r in batch if (r.chat_key.split(":", 1)[0], r.author_id) in accounts
                     and not r.is_bot and r.id != skip_id and r.id.removeprefix(f"{r.chat_key}#") != skip_id]
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
        """Forget what the group sent before ``cutoff``, everywhere (other chats of a shared pai keep theirs);
        returns how many memory records went."""
        report = await Forgetter(self.s.erasers).expire(self.s.pai_of(group_key), group_key, cutoff)
        if report.failed:
            log.warning("retention in %s could not reach %s; trying again next time", group_key, report.failed)
        return sum(n for kind, n in report.counts.items() if kind in _MEMORY_KINDS)


def _short(text: str, width: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def build(env: SkillEnv) -> SkillSet:
    skill = PrivacySkill(env.services, env.shared.db)
    return SkillSet([skill], [skill])


plugin = SkillPlugin(
    name="privacy",
    build=build,
    order=80,
    description="/optout, /forget-me and what the member keeps about you",
)
