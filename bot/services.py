"""The handles the pipeline, commands and skills share. Built once by the composition root."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.config import GroupOverride, Settings
from bot.errors import DeliveryError, PlatformUnavailable
from bot.events import ChatRef, Message, Outgoing, SentRef
from bot.i18n import SOURCE_LOCALE, Catalogs, Translator, detect_language
from bot.limits import budget_spent
from bot.pais import PaiDirectory
from bot.people import People
from bot.ports import (
    BOT, COMMAND, QUESTION, STATEMENT, UNCLASSIFIED, ChatAdapter, Clock, ContentEraser, MemoryRecord, MemoryStore,
    NoTelemetry, Telemetry,
)
from bot.state import StateDB

if TYPE_CHECKING:
    from bot.brain import Brain
    from bot.relay import Relay

log = logging.getLogger("paibot.services")


# Per-group settings members may change at run time (``/settings``), stored in the core's group_kv under
# ``setting:<name>``. Precedence: runtime value > ``groups.<key>`` in config.yaml > the bot-wide value.
RUNTIME_SETTINGS = ("name", "persona", "language", "timezone", "quiet_hours", "proactive", "retention_days")

LANGUAGE_WINDOW = 20  # members' statements that decide the language of a group set to "auto"
# What ``record_of`` appends to a message's text for each attachment: " [video: harbour.webm]".
_ATTACHMENT_NOTES = re.compile(r"(?: \[[a-z]+: [^\n]*?\])+\Z")

SentHook = Callable[[Outgoing, SentRef], Awaitable[None]]


@dataclass
class Services:
    settings: Settings
    memory: MemoryStore
    state: StateDB
    clock: Clock
    brain: Brain | None = None
    # The connected adapters, by platform. A configured platform that is not connected (still connecting
    # through an outage, or stopped because the operator must act) is in ``unavailable``, with why.
    adapters: dict[str, ChatAdapter] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    # Called after every message the bot sent (e.g. a skill noting which message holds its poll).
    sent_hooks: list[SentHook] = field(default_factory=list)
    # Every store that keeps member content (``bot.ports.ContentEraser``): the memory, the inbox, the skills'
    # stores, platforms that keep messages themselves. ``/forget-me`` and retention reach them all through
    # ``bot.erasure.Forgetter``; a skill creating such a store appends it here.
    erasers: list[ContentEraser] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    catalogs: Catalogs = field(default_factory=Catalogs)
    # Pais (groups that are one conversation), people who linked their accounts, and the relay between a
    # pai's groups (None: nothing is passed on). The first two are made from the state when not given.
    pais: PaiDirectory = None  # type: ignore[assignment]
    people: People = None  # type: ignore[assignment]
    relay: Relay | None = None
    telemetry: Telemetry = field(default_factory=NoTelemetry)  # figures for the metrics (bot.app.metrics)
    _runtime: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.pais is None:
            self.pais = PaiDirectory(self.settings, self.state)
        if self.people is None:
            self.people = People(self.state)

    def pai_of(self, group_key: str) -> str:
        """The memory scope of a group: its pai's (from config.yaml or made from chat), else its own key."""
        return self.pais.pai_of(group_key)

    def adapter_for(self, chat: ChatRef) -> ChatAdapter:
        """The chat's connected adapter. Raises ``PlatformUnavailable`` when its platform is configured but
        not connected (the reply waits in the inbox), ``DeliveryError`` when no adapter serves it at all."""
        adapter = self.adapters.get(chat.platform)
        if adapter is None:
            self.ensure_connected(chat.platform)
            raise DeliveryError(f"no adapter is running for platform {chat.platform!r}")
        return adapter

    def ensure_connected(self, platform: str) -> None:
        """Raise ``PlatformUnavailable`` when ``platform``'s adapter is configured but not connected."""
        reason = self.unavailable.get(platform)
        if reason is not None:
            raise PlatformUnavailable(reason)

    # ----------------------------------------------------------------- per-group settings

    async def load_group(self, group_key: str) -> GroupOverride:
        """Read the group's runtime settings once (cached; ``set_group_setting`` keeps the cache current)
        and return the effective group override. Call before the sync views below in a new code path."""
        if group_key not in self._runtime:
            values: dict[str, str] = {}
            for name in RUNTIME_SETTINGS:
                value = await self.state.group_get(group_key, f"setting:{name}")
                if value is not None:
                    values[name] = value
            self._runtime[group_key] = values
        return self.group(group_key)

    async def set_group_setting(self, group_key: str, name: str, value: str) -> None:
        """Store a runtime setting (validated by the caller); an empty value falls back to config."""
        if name not in RUNTIME_SETTINGS:
            raise ValueError(f"unknown group setting {name!r}")
        await self.load_group(group_key)
        await self.state.group_set(group_key, f"setting:{name}", value)
        if value:
            self._runtime[group_key][name] = value
        else:
            self._runtime[group_key].pop(name, None)

    def runtime_settings(self, group_key: str) -> dict[str, str]:
        """The runtime values set for the group (as loaded), without config fallbacks."""
        return dict(self._runtime.get(group_key, {}))

    def group(self, group_key: str) -> GroupOverride:
        """The group's config override with its runtime settings applied on top."""
        base = self.settings.group(group_key)
        rt = self._runtime.get(group_key)
        if not rt:
            return base
        text_keys = ("name", "persona", "language", "timezone", "quiet_hours")
        changes: dict[str, Any] = {k: v for k, v in rt.items() if k in text_keys}
        if "proactive" in rt:
            changes["proactive"] = rt["proactive"] == "on"
        if "retention_days" in rt:
            changes["retention_days"] = int(rt["retention_days"])
        return dataclasses.replace(base, **changes)

    def settings_for(self, group_key: str) -> Settings:
        """The settings as seen from one group (its runtime settings merged into ``groups.<key>``)."""
        if not self._runtime.get(group_key):
            return self.settings
        return dataclasses.replace(self.settings, groups={**self.settings.groups, group_key: self.group(group_key)})

    def group_setting(self, group_key: str, name: str) -> Any:
        """One effective setting: runtime > ``groups.<key>`` > bot-wide."""
        g = self.group(group_key)
        s = self.settings
        fallback: dict[str, Any] = {
            "name": s.bot.name, "persona": s.bot.persona, "language": s.bot.language,
            "timezone": s.bot.timezone, "quiet_hours": "", "proactive": s.triggers.proactive,
            "retention_days": s.memory.retention_days,
        }
        if name not in fallback:
            raise ValueError(f"unknown group setting {name!r}")
        value = getattr(g, name)
        return fallback[name] if value is None or value == "" else value

    def quiet_now(self, group_key: str) -> bool:
        """Whether the group's quiet hours (``"23:00-07:00"``, its local time) cover this moment. During
        quiet hours the member answers only when addressed (mentions, replies, commands); keyword triggers
        and proactive answers wait. Reminders and poll results still go out."""
        span = str(self.group_setting(group_key, "quiet_hours") or "")
        bounds = parse_quiet_hours(span)
        if bounds is None:
            return False
        start, end = bounds
        local = self.clock.now().astimezone(self.tz_for(group_key))
        minute = local.hour * 60 + local.minute
        return start <= minute < end if start <= end else (minute >= start or minute < end)

    async def locale_of(self, group_key: str) -> str:
        """The catalog locale a group reads: its own ``language`` setting (runtime > ``groups.<key>``), else
        ``bot.language``; "auto" at either step means the language of the group's recent messages, and when
        neither names a language with a catalog, English (the source language)."""
        await self.load_group(group_key)
        for language in (self.group(group_key).language, self.settings.bot.language):
            if not language:
                continue
            if language.strip().lower() == "auto":
                detected = await self._detected_language(group_key)
                locale = self.catalogs.resolve(detected) if detected else None
            else:
                locale = self.catalogs.resolve(language)
            if locale is not None:
                return locale
        return SOURCE_LOCALE

    async def translator(self, group_key: str) -> Translator:
        """The translator for what the bot writes in this group (see ``bot.i18n``)."""
        return self.catalogs.translator(await self.locale_of(group_key))

    async def _detected_language(self, group_key: str) -> str | None:
        """The language members write to each other in: that of their last statements. Commands, questions
        and requests put to the bot and the bot's own messages do not decide it (a Chinese group that runs
        English commands or asks the bot in English reads Chinese), nor do other bots, files or captions.
        Only where the recent messages hold no statement at all (a new group whose first message is
        "/remind 每天 9点 打卡", a direct chat, a platform that shows the bot only what is addressed to it) do
        the words members addressed to the bot decide: their questions and their commands' words."""
        recent = await self.memory.recent(self.pai_of(group_key), LANGUAGE_WINDOW * 4)
        members = [r for r in recent if r.chat_key == group_key and not r.is_bot]
        # the names of shared files are not what members write
        detected = detect_language(
            (_ATTACHMENT_NOTES.sub("", r.text) for r in members if r.kind == STATEMENT), LANGUAGE_WINDOW
        )
        if detected is None:
            addressed = (_ATTACHMENT_NOTES.sub("", r.text) for r in members if r.kind in (QUESTION, COMMAND))
            detected = detect_language(addressed, LANGUAGE_WINDOW)
        # Kept durably, so a group stays in its language when its memory is emptied (retention, /forget-me)
        # or holds nothing new, e.g. a reminder firing after a long quiet spell.
        stored = await self.state.group_get(group_key, "language:detected")
        if detected is None:
            return stored or None
        if detected != stored:
            await self.state.group_set(group_key, "language:detected", detected)
        return detected

    def tz_for(self, group_key: str) -> ZoneInfo:
        return ZoneInfo(self.group_setting(group_key, "timezone"))

    def name_for(self, group_key: str) -> str:
        return str(self.group_setting(group_key, "name"))

    def name_shown(self, group_key: str, t: Translator) -> str:
        """The name the bot gives itself in a sentence for this group: the group's own name if it set one,
        else, for readers of a CJK language, the first alias written in CJK ("派" for "Pai"), else the name."""
        if self.group(group_key).name or t.locale.split("_")[0] not in ("zh", "ja", "ko"):
            return self.name_for(group_key)
        cjk = [a for a in self.settings.bot.aliases if a and not a.isascii()]
        return cjk[0] if cjk else self.name_for(group_key)

    async def send(self, out: Outgoing) -> SentRef:
        """Deliver through the chat's adapter and remember what the bot said (so replies to it are ours)."""
        ref = await self.adapter_for(out.chat).send(out)
        await self.remember_own(out, ref)
        for hook in self.sent_hooks:
            try:
                await hook(out, ref)
            except Exception:  # the message is out: a hook failing must not make the caller send it again
                log.exception("a sent-hook failed for a message in %s", out.chat.key)
        return ref

    async def remember_own(self, out: Outgoing, ref: SentRef) -> None:
        key = out.chat.key
        for mid in (ref.message_id, *ref.part_ids):
            await self.state.group_set(key, f"own:{mid}", "1")
        pai = self.pai_of(key)
        await self.memory.record(
            MemoryRecord(
                id=record_id(pai, key, ref.message_id),
                pai=pai,
                chat_key=key,
                author_id="@me",
                author_name=self.name_for(key),
                text=out.text,
                sent_at=ref.sent_at,
                reply_to_id=record_id(pai, key, out.reply_to) if out.reply_to else None,
                url=ref.url,
                is_bot=True,
                kind=BOT,
            )
        )

    def budget_spent(self, group_key: str, member_key: str = "") -> bool:
        """Whether a model call for ``member_key`` in the group would exceed a daily budget: the group's,
        the member's across groups and linked accounts, or the whole bot's (``bot.limits.budget_spent``;
        0 means no budget)."""
        accounts = self.people.identities(member_key) if member_key else ()
        return budget_spent(self.settings.limits, self.state, group_key, member_key, accounts=accounts) is not None

    async def is_own_message(self, chat: ChatRef, message_id: str) -> bool:
        return await self.state.group_get(chat.key, f"own:{message_id}") is not None


def parse_quiet_hours(span: str) -> tuple[int, int] | None:
    """``"23:00-07:00"`` -> minutes of the day ``(1380, 420)``; None for empty, "off" or malformed text."""
    m = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*", span)
    if not m:
        return None
    start, end = int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))
    return None if start == end else (start, end)


def record_id(pai: str, chat_key: str, message_id: str) -> str:
    """A message's record id: inside a pai that bridges several chats, platform message ids may collide, so
    they are qualified by their chat (``"<chat key>#<id>"``)."""
    return message_id if pai == chat_key else f"{chat_key}#{message_id}"


def record_of(msg: Message, pai: str, kind: str = UNCLASSIFIED, reply_id: str | None = None) -> MemoryRecord:
    """The memory record of an inbound message (attachments noted in the text for search), of ``kind``
    (``bot.policy.record_kind``; unclassified, the memory derives it from the text). ``reply_id``: the
    record id of what it replies to, when that is not the replied message itself (a relayed copy's
    original, ``bot.relay.Relay.localize``)."""
    text = msg.text
    if msg.attachments:
        text += "".join(f" [{a.kind}: {a.name}]" for a in msg.attachments)
    if reply_id is None and msg.reply_to is not None:
        reply_id = record_id(pai, msg.chat.key, msg.reply_to.message_id)
    return MemoryRecord(
        id=record_id(pai, msg.chat.key, msg.id),
        pai=pai,
        chat_key=msg.chat.key,
        author_id=msg.author.user_id,
        author_name=msg.author.display_name,
        text=text,
        sent_at=msg.sent_at,
        reply_to_id=reply_id,
        url=msg.url,
        is_bot=msg.author.is_bot or msg.from_me,
        meta={"thread": msg.thread} if msg.thread else {},
        kind=kind,
    )
