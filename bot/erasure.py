"""Forgetting that reaches every copy: one ``Forgetter`` drives every ``ContentEraser`` (``bot.ports``).

    forget(erasure)
      1 every eraser names the passages it holds that are being forgotten (her messages, file names,
        reminder texts ...), cut into quotable pieces (``quote_keys``)
      2 every eraser removes what the erasure names, and the bot's own messages that quote one of those
        passages or reply to a forgotten message

The erasers are the memory (transcript, lexical and vector indexes), the core's inbox and reply ledger, the
skills' stores (reminders, to-dos and decisions, polls and votes, posted files and documents) and platform
stores that keep messages themselves (the web group). ``/forget-me``, ``paibot memory forget`` and retention
all come here, so they cannot disagree about what "forgotten" means. One eraser failing does not stop the
others; the report names it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from datetime import datetime

from bot.config import Settings
from bot.ports import ContentEraser, Erasure, MemoryStore, passage_key, quote_units

log = logging.getLogger("paibot.erasure")

MIN_QUOTE = 8  # shorter pieces ("ok", "see you") would match unrelated bot messages
MIN_CJK_QUOTE = 4  # four Chinese characters already make a phrase
_PIECES = re.compile(r"(?<=[.!?;。！？；])\s*|\n+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def quote_keys(texts: Iterable[str]) -> tuple[str, ...]:
    """The passages (whole texts and their sentences) long enough to be recognised when quoted, as
    ``passage_key``s."""
    out: dict[str, None] = {}
    for text in texts:
        for piece in (text, *_PIECES.split(text)):
            key = passage_key(piece)
            if len(key) >= (MIN_CJK_QUOTE if _CJK.search(key) else MIN_QUOTE):
                out[key] = None
    return tuple(out)


def member_scope(
    settings: Settings, chat_key: str, *, platform: str | None = None, pais: PaiScopes | None = None
) -> tuple[str, tuple[str, ...]]:
    """The pai of a group and the chats a member's erasure covers there: the pai's chats on the group's
    platform (a member id means something on its own platform only). ``platform``: those on another
    platform instead (an account the member linked there, ``bot.people``; empty when the pai has none).
    ``pais``: the bot's pais (``bot.pais.PaiDirectory``), which knows those made from chat too; without it,
    config.yaml's."""
    here = chat_key.split(":", 1)[0]
    platform = platform or here
    joined = pais.by_scope(pais.pai_of(chat_key)) if pais is not None else None
    if joined is not None:
        pai, members = joined.scope, tuple(joined.chats)
    else:
        pai = settings.pai_of(chat_key)
        name = pai.removeprefix("pai:") if pai != chat_key else ""
        members = tuple(settings.pais.get(name, ()))
    chats = tuple(k for k in members if k.split(":", 1)[0] == platform)
    if platform != here or chat_key in chats:
        return pai, chats
    return pai, (chat_key, *chats)


class PaiScopes(Protocol):
    """What ``member_scope`` needs of the bot's pais (``bot.pais.PaiDirectory``)."""

    def pai_of(self, chat_key: str) -> str: ...

    def by_scope(self, scope: str) -> Any: ...


@dataclass
class Report:
    """What a ``forget`` removed (counts by kind of item) and which erasers failed."""

    counts: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            if n:
                self.counts[kind] = self.counts.get(kind, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Forgetter:
    """Runs one erasure through every eraser (see the module docstring)."""

    def __init__(self, erasers: Sequence[ContentEraser]) -> None:
        self.erasers = erasers

    async def forget(self, erasure: Erasure) -> Report:
        report = Report()
        if erasure.author_id is not None or erasure.message_ids:
            texts: list[str] = []
            for eraser in self.erasers:
                try:
                    texts += await eraser.passages(erasure)
                except Exception:
                    log.exception("could not collect passages from %s", _name(eraser))
            units: set[str] = set()
            for text in texts:
                units |= quote_units(text)
            erasure = replace(erasure, quotes=quote_keys(texts), quote_units=frozenset(units))
        for eraser in self.erasers:
            try:
                report.add(await eraser.erase(erasure))
            except Exception:
                log.exception("%s could not forget", _name(eraser))
                report.failed.append(_name(eraser))
        return report

    async def expire(self, pai: str, chat_key: str, before: datetime) -> Report:
        """Retention: forget everything of one chat sent before ``before``."""
        return await self.forget(Erasure(pai, (chat_key,), before=before))


def _name(eraser: object) -> str:
    return type(eraser).__name__


class MemoryPortEraser:
    """``ContentEraser`` over any ``MemoryStore`` without an erasure of its own (it sees only what the port
    offers: the records it can list, ``forget`` by author or id). The real memory store erases itself."""

    PAGE = 100_000

    def __init__(self, memory: MemoryStore) -> None:
        self.memory = memory

    async def _doomed(self, e: Erasure) -> list[object]:
        records = await self.memory.recent(e.pai, self.PAGE)
        ids = set(e.message_ids)
        return [
            r for r in records
            if r.chat_key in e.chat_keys and (
                (e.author_id is not None and r.author_id == e.author_id and not r.is_bot)
                or r.id in ids or r.id.removeprefix(f"{r.chat_key}#") in ids  # alone, or qualified in a pai
                or (e.before is not None and r.sent_at < e.before)
                or (r.is_bot and e.quoted_in(r.text)))
        ]  # fmt: skip

    async def passages(self, erasure: Erasure) -> Sequence[str]:
        return [r.text for r in await self._doomed(erasure) if not r.is_bot]  # type: ignore[attr-defined]

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        doomed = await self._doomed(erasure)
        if not doomed:
            return {}
        n = await self.memory.forget(erasure.pai, ids=[r.id for r in doomed])  # type: ignore[attr-defined]
        return {"memory records": n}


def memory_eraser(memory: MemoryStore) -> ContentEraser:
    """The memory's own eraser when it has one (``passages`` and ``erase``), else ``MemoryPortEraser``."""
    if callable(getattr(memory, "erase", None)) and callable(getattr(memory, "passages", None)):
        return memory  # type: ignore[return-value]
    return MemoryPortEraser(memory)
