"""What a record is, for records that arrive without saying (imports, data written before kinds existed).

The live pipeline tells the store what each message is (``bot.policy.record_kind``). A chat export or an
older transcript only has text, so the store derives the kind from it: the bot's own messages (``is_bot`` from
the bot's own id, or any bot when the export cannot tell), commands (the text starts with a command prefix),
questions and requests put to the bot (the text names it: ``@Pai``, or ``Pai`` as a word), and statements
(everything else). The bot's names and the command prefixes come from the caller as plain values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.ports import BOT, COMMAND, QUESTION, RECORD_KINDS, STATEMENT, UNCLASSIFIED, MemoryRecord

OWN_AUTHOR_ID = "@me"  # the author id the core gives the bot's own messages


@dataclass(frozen=True)
class KindRules:
    """How to recognise the bot in text: its names (and aliases) and the command prefixes."""

    names: tuple[str, ...] = ("Pai",)
    command_prefixes: tuple[str, ...] = ("/",)
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", _name_pattern(self.names))

    @classmethod
    def of(cls, settings: Any) -> KindRules:
        """The rules for a bot's settings (duck-typed: ``bot.name``, ``bot.aliases``, the groups' own names and
        ``triggers.command_prefixes``), so the memory reads nothing else of the core's configuration."""
        names = (settings.bot.name, *settings.bot.aliases, *(g.name for g in settings.groups.values() if g.name))
        return cls(tuple(dict.fromkeys(n for n in names if n)), tuple(settings.triggers.command_prefixes))

    def classify(self, text: str, is_bot: bool) -> str:
        if is_bot:
            return BOT
        stripped = text.lstrip()
        if any(p and stripped.startswith(p) and len(stripped) > len(p) and stripped[len(p)].isalnum()
               for p in self.command_prefixes):  # fmt: skip
            return COMMAND
        if self._pattern.search(text):
            return QUESTION
        return STATEMENT

    def kind_of(self, rec: MemoryRecord) -> str:
        """The record's kind: as given, or derived from its text when it is unclassified (or unknown). An
        unclassified record is the bot's own when it says so, when its author is the core's id for the bot,
        or when its author's name is the bot's name or an alias (how a QQ or WeChat export shows the bot's
        account: by its name only)."""
        if rec.kind in RECORD_KINDS:
            return rec.kind
        own = rec.is_bot or rec.author_id == OWN_AUTHOR_ID or self.is_bot_name(rec.author_name)
        return self.classify(rec.text, own)

    def is_bot_name(self, name: str) -> bool:
        """Whether ``name`` is the bot's name or an alias as a whole (``Pai``, ``@派``), case-insensitively."""
        folded = name.strip().lstrip("@＠").strip().casefold()
        return bool(folded) and any(folded == n.casefold() for n in self.names)


def _name_pattern(names: Sequence[str]) -> re.Pattern[str]:
    """``@name`` anywhere, or the bare name as a whole word (any position for CJK names)."""
    parts = []
    for name in names:
        if not name:
            continue
        esc = re.escape(name)
        parts.append(f"[@＠]{esc}")
        parts.append(rf"(?<![\w@]){esc}(?!\w)" if name.isascii() else esc)
    return re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE)


__all__ = ["OWN_AUTHOR_ID", "UNCLASSIFIED", "KindRules"]
