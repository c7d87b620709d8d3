"""Which group key a Telegram chat belongs to, across basic group -> supergroup upgrades.

When a basic group is upgraded, Telegram gives it a new id (``-100...``) and the old id stops working. The
group should keep its memory, so the adapter keeps using the *old* id as the group's ``chat_id`` and sends
to the new one. The mapping is durable: it is stored through the inbox's cursor table under
``telegram:migrate:<new id>`` -> old id and ``telegram:migrated:<old id>`` -> new id, before the update
that announced it is acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from adapters.telegram.convert import Migration
from bot.ports import IntakeSink

log = logging.getLogger("paibot.telegram")

_SUPERGROUP_PREFIX = "-100"


def _maybe_migrated(chat_id: int) -> bool:
    return str(chat_id).startswith(_SUPERGROUP_PREFIX)


class ChatMap:
    """Durable two-way map between a migrated chat's old id (the group key) and its current id."""

    def __init__(self, sink: IntakeSink) -> None:
        self._sink = sink
        self._key: dict[int, str] = {}  # current chat id -> group chat_id
        self._target: dict[str, int] = {}  # group chat_id -> current chat id

    async def prime(self, chat_ids: Iterable[int]) -> None:
        """Load the mapping for these chats so ``key_of`` can answer synchronously."""
        for chat_id in set(chat_ids):
            if chat_id in self._key:
                continue
            old = await self._sink.cursor(f"telegram:migrate:{chat_id}") if _maybe_migrated(chat_id) else None
            self._key[chat_id] = old or str(chat_id)

    def key_of(self, chat_id: int) -> str:
        """The group's ``chat_id`` for messages in ``chat_id`` (call ``prime`` first)."""
        return self._key.get(chat_id, str(chat_id))

    async def target_of(self, group_chat_id: str) -> int:
        """The chat id to send to for a group's ``chat_id``."""
        if group_chat_id not in self._target:
            new = await self._sink.cursor(f"telegram:migrated:{group_chat_id}")
            self._target[group_chat_id] = int(new) if new else int(group_chat_id)
        return self._target[group_chat_id]

    async def record_migration(self, m: Migration) -> None:
        """Persist ``m`` (idempotent). A chain old -> mid -> new keeps the oldest id as the key."""
        key = self._key.get(m.old_chat_id) or await self._sink.cursor(f"telegram:migrate:{m.old_chat_id}")
        key = key or str(m.old_chat_id)
        if self._key.get(m.new_chat_id) == key and self._target.get(key) == m.new_chat_id:
            return
        await self._sink.submit([], cursor_key=f"telegram:migrate:{m.new_chat_id}", cursor=key)
        await self._sink.submit([], cursor_key=f"telegram:migrated:{key}", cursor=str(m.new_chat_id))
        self._key[m.new_chat_id] = key
        self._target[key] = m.new_chat_id
        log.info("telegram: group %s became supergroup %s; it keeps its memory", key, m.new_chat_id)
