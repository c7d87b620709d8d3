"""Pure decisions about an inbound message: may we remember it, and should the member speak?

No I/O here: the member pipeline gathers the facts (``Facts``) and these functions turn them into a
``Decision``. Access rules are fail-closed and use immutable platform ids only, never display names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config import Settings
from bot.events import Message
from bot.ports import BOT, COMMAND, QUESTION, STATEMENT


@dataclass(frozen=True, slots=True)
class Facts:
    """What the pipeline knows beyond the message itself."""

    reply_to_me: bool = False
    known_commands: frozenset[str] = frozenset()
    age_s: float = 0.0  # how long ago the message was sent


@dataclass(frozen=True, slots=True)
class Decision:
    speak: bool
    reason: str
    command: str | None = None
    args: str = ""
    prompt: str = ""


def may_record(msg: Message, settings: Settings) -> bool:
    """Whether the message belongs to a conversation we serve at all: unlisted or disabled groups are not
    kept, and neither is a direct conversation with someone who may not use the bot (blocked, or not on
    ``access.allowed_users``): their private messages are nobody's group conversation, so they are not
    remembered, parsed or captioned."""
    if not group_allowed(msg, settings):
        return False
    return not msg.is_direct or user_allowed(msg, settings)


def group_allowed(msg: Message, settings: Settings) -> bool:
    if not settings.group(msg.chat.key).enabled:
        return False
    if msg.is_direct:
        return settings.access.allow_direct_messages
    allowed = settings.access.allowed_groups
    return not allowed or msg.chat.key in allowed


def user_allowed(msg: Message, settings: Settings) -> bool:
    user = msg.author.key
    if user in settings.access.blocked_users:
        return False
    allowed = settings.access.allowed_users
    return not allowed or user in allowed or user in settings.bot.admins


def name_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """Matches the bot's name or an alias: ``@name`` or ``＠name`` anywhere (also straight before more CJK
    text: "@派帮我看看"); a bare Latin name as a whole word ("Pai, ..."); a bare CJK name only where it
    addresses the bot, at the start of a sentence (a one-character name before a comma, colon or space:
    "派，帮我看看", "派派在吗"), never inside other words ("派对", "分派")."""
    parts = []
    for name in sorted({n for n in names if n}, key=len, reverse=True):  # "派派" before "派"
        esc = re.escape(name)
        parts.append(f"[@＠]{esc}")
        if name.isascii():
            parts.append(rf"(?<![\w@＠]){esc}(?!\w)")
        elif len(name) > 1:  # "派派在吗": a name of several characters is no part of a longer word there
            parts.append(rf"(?:^|(?<=[\s。！？!?…])){esc}")
        else:
            parts.append(rf"(?:^|(?<=[\s。！？!?…])){esc}(?=[\s,，:：、!！?？~～]|$)")
    return re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE)


def parse_command(text: str, prefixes: tuple[str, ...]) -> tuple[str, str, str] | None:
    """``"/remind@PaiBot in 2h stand up"`` -> ``("remind", "PaiBot", "in 2h stand up")``."""
    stripped = text.lstrip()
    for prefix in prefixes:
        if prefix and stripped.startswith(prefix):
            m = re.match(r"([A-Za-z0-9_\-]+)(?:@(\S+))?(?:\s+(.*))?$", stripped[len(prefix) :], re.DOTALL)
            if m:
                return m.group(1).lower().replace("-", "_"), m.group(2) or "", (m.group(3) or "").strip()
    return None


def decide(msg: Message, settings: Settings, facts: Facts) -> Decision:
    """Should the member answer this message, and how?"""
    if msg.from_me:
        return Decision(False, "own message")
    if not group_allowed(msg, settings):
        return Decision(False, "group not allowed")
    trig = settings.triggers
    if msg.author.is_bot and not trig.respond_to_bots:
        return Decision(False, "message from a bot")
    if not user_allowed(msg, settings):
        return Decision(False, "user not allowed")
    if msg.edited or msg.forwarded:
        return Decision(False, "edited or forwarded message")
    if trig.answer_within_minutes > 0 and facts.age_s > trig.answer_within_minutes * 60:
        return Decision(False, "too old to answer")

    group = settings.group(msg.chat.key)
    bot_name = group.name or settings.bot.name
    names = (bot_name, settings.bot.name, *settings.bot.aliases)
    pattern = name_pattern(names)
    named = bool(pattern.search(msg.text))
    prompt = clean_prompt(pattern.sub("", msg.text)) if named else msg.text.strip()
    addressed = msg.mentions_me or named

    if trig.commands:
        parsed = parse_command(msg.text, trig.command_prefixes)
        if parsed is None and addressed:
            # "@Pai /forget-me": where the bot hears only mentions (a WeCom group), a command follows one
            parsed = parse_command(re.sub(r"^\s*[@＠]\S*\s*", "", prompt), trig.command_prefixes)
        if parsed is not None:
            name, target, args = parsed
            for_us = not target or target.lower() in {n.lower() for n in names if n} or msg.mentions_me
            if name in facts.known_commands and for_us:
                return Decision(True, "command", command=name, args=args, prompt=args)
            if target and not for_us:
                return Decision(False, "command for another bot")

    if msg.is_direct and trig.direct:
        return Decision(True, "direct message", prompt=prompt)
    if addressed and trig.mention:
        return Decision(True, "mention", prompt=prompt)
    if facts.reply_to_me and trig.reply:
        return Decision(True, "reply to me", prompt=prompt)
    keywords = (*trig.keywords, *group.keywords)
    low = msg.text.lower()
    if any(k and k.lower() in low for k in keywords):
        return Decision(True, "keyword", prompt=prompt)
    return Decision(False, "not addressed")


_ADDRESSED = frozenset({"mention", "reply to me", "direct message"})


def record_kind(msg: Message, decision: Decision) -> str:
    """What a message is, for the memory (``bot.ports.RECORD_KINDS``): the bot's own message, a command, a
    question or request put to the bot (a mention, a reply to the bot, a direct message), or a statement.
    Only statements (and files and captions, recorded by their skills) are evidence of what the group said."""
    if msg.from_me:
        return BOT
    if decision.command or decision.reason == "command for another bot":
        return COMMAND
    if decision.reason in _ADDRESSED:
        return QUESTION
    return STATEMENT


def clean_prompt(text: str) -> str:
    text = re.sub(r"^[\s,，:：!！]+", "", text)
    return re.sub(r"\s{2,}", " ", text).strip()
