"""Names and quoted messages from the OneBot API, cached in memory (``convert.Lookups``).

What the cache holds, and for how long: group cards / nicknames by (group, QQ number) and group names, for
``ttl_s`` (default 6 hours), at most ``max_entries`` of each (least recently used dropped first), and the
text and author of at most 500 quoted messages for 10 minutes. Nothing is written to disk; a restart
empties it.
Names are refreshed from every message a member sends (the event carries the card), so a member who
changes their card shows under the new one at once. ``forget`` drops what an erasure names (``/forget-me``,
``paibot memory forget``, retention: the adapter is a ``bot.ports.ContentEraser``).

A lookup never raises: an implementation that lacks the action, is not connected or times out gives ""
(the caller falls back to the QQ number) and is asked again only after ``retry_s``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from adapters.onebot.convert import PLATFORM, PRIVATE_PREFIX, Quoted
from adapters.onebot.cqcode import normalize
from bot.ports import Clock, Erasure

log = logging.getLogger("paibot.onebot")

QUOTE_TTL_S = 600.0  # quoted text is member content: kept only as long as a conversation around it
K = TypeVar("K")
V = TypeVar("V")
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


class _Cache(Generic[K, V]):
    def __init__(self, clock: Clock, ttl_s: float, max_entries: int) -> None:
        self._clock, self._ttl, self._max = clock, ttl_s, max_entries
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if self._clock.now().timestamp() - hit[0] > self._ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: K, value: V, ttl_s: float | None = None) -> None:
        # A shorter ttl is stored as an older entry, so it expires sooner.
        born = self._clock.now().timestamp() - (self._ttl - ttl_s if ttl_s is not None else 0.0)
        self._items[key] = (born, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def drop(self, match: Callable[[K, V, float], bool]) -> int:
        """Remove the entries ``match(key, value, noted at)`` selects; returns how many."""
        doomed = [k for k, (born, v) in self._items.items() if match(k, v, born)]
        for key in doomed:
            del self._items[key]
        return len(doomed)


class OneBotLookups:
    def __init__(
        self,
        call: Call,
        clock: Clock,
        *,
        ttl_s: float = 6 * 3600,
        max_entries: int = 5000,
        retry_s: float = 300,
    ) -> None:
        self._call = call
        self._retry = retry_s
        self._members: _Cache[tuple[str, str], str] = _Cache(clock, ttl_s, max_entries)
        self._groups: _Cache[str, str] = _Cache(clock, ttl_s, max_entries)
        self._quotes: _Cache[str, Quoted | None] = _Cache(clock, QUOTE_TTL_S, 500)

    def note_member(self, group_id: str, user_id: str, name: str) -> None:
        """A name seen on a live message (fresher than any lookup)."""
        if name:
            self._members.put((group_id, user_id), name)

    def forget(self, erasure: Erasure) -> int:
        """Drop the cached copies an erasure reaches; returns how many entries went.

        A member's erasure: her names in the erasure's groups, and quoted messages she wrote or that quote
        what is forgotten. Messages by id: those quotes. Retention: whatever was noted before the cutoff in
        those groups (the caches never keep anything a day, so this is a formality)."""
        prefix = f"{PLATFORM}:"
        groups = {k.removeprefix(prefix) for k in erasure.chat_keys if k.startswith(prefix)}
        groups = {g for g in groups if not g.startswith(PRIVATE_PREFIX)}
        cutoff = erasure.before.timestamp() if erasure.before is not None else None
        ids = set(erasure.message_ids)

        def old(born: float) -> bool:
            return cutoff is not None and born < cutoff

        def name_goes(key: tuple[str, str], _name: str, born: float) -> bool:
            return key[0] in groups and (key[1] == erasure.author_id or old(born))

        def quote_goes(message_id: str, quoted: Quoted | None, born: float) -> bool:
            if quoted is None:
                return False
            return (
                old(born) or message_id in ids or quoted.author_id == erasure.author_id
                or erasure.quoted_in(quoted.text)
            )  # fmt: skip

        if not groups and not any(k.startswith(prefix) for k in erasure.chat_keys):
            return 0
        return self._members.drop(name_goes) + self._quotes.drop(quote_goes)

    def holds(self, text: str) -> bool:
        """Whether a cached name or quoted message contains ``text`` (what the privacy tests look for)."""
        names = [v for _, v in self._members._items.values()] + [v for _, v in self._groups._items.values()]
        quotes = [f"{q.author_id} {q.author_name} {q.text}" for _, q in self._quotes._items.values() if q]
        return any(text in entry for entry in names + quotes)

    async def _ask(self, action: str, params: dict[str, Any]) -> Any:
        try:
            return await self._call(action, params)
        except Exception as exc:  # noqa: BLE001 - a lookup is a nicety; see the module docstring
            log.debug("onebot: %s failed: %s", action, exc)
            return None

    async def member_name(self, group_id: str, user_id: str) -> str:
        key = (group_id, user_id)
        cached = self._members.get(key)
        if cached is not None:
            return cached
        data = await self._ask("get_group_member_info", {"group_id": int(group_id), "user_id": int(user_id)})
        name = ""
        if isinstance(data, dict):
            name = str(data.get("card") or data.get("nickname") or "").strip()
        self._members.put(key, name, None if name else self._retry)
        return name

    async def group_name(self, group_id: str) -> str:
        cached = self._groups.get(group_id)
        if cached is not None:
            return cached
        data = await self._ask("get_group_info", {"group_id": int(group_id)})
        name = str(data.get("group_name") or "").strip() if isinstance(data, dict) else ""
        self._groups.put(group_id, name, None if name else self._retry)
        return name

    async def quoted(self, message_id: str) -> Quoted | None:
        if self._quotes.get(message_id) is not None:
            return self._quotes.get(message_id)
        if not message_id.lstrip("-").isdigit():
            return None
        data = await self._ask("get_msg", {"message_id": int(message_id)})
        if not isinstance(data, dict):
            return None
        sender = data.get("sender") if isinstance(data.get("sender"), dict) else {}
        author = str(sender.get("user_id") or data.get("user_id") or "")
        name = str(sender.get("card") or sender.get("nickname") or "")
        parts = normalize(data.get("message", data.get("raw_message", "")))
        text = "".join(str(s["data"].get("text", "")) for s in parts if s["type"] == "text").strip()
        quoted = Quoted(text, author, name)
        self._quotes.put(message_id, quoted)
        return quoted
