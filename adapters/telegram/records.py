"""Durable records of what a send already delivered, so a send repeated after a crash posts nothing twice.

Telegram has no idempotent send. When the core passes ``Outgoing.idempotency_key`` (the triggering event),
the adapter writes, after each delivered part, the list of delivered parts under the key
``sent:<idempotency key>:<digest of the content>`` of its key-value store (``AdapterEnv.store``). A later send
of the same content with the same key skips the parts recorded there. The only window left is between
Telegram's answer and that write (milliseconds), instead of the whole multi-part send. Records expire after
``KEEP_S`` (a reply interrupted by a crash is resumed at the next start, long before) and are pruned.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from bot.events import Outgoing
from bot.ports import KeyValueStore

log = logging.getLogger("paibot.telegram")

KEEP_S = 30 * 24 * 3600.0


class SendRecords:
    """Load and save delivered-part records; a no-op without a store or without an idempotency key."""

    def __init__(self, store: KeyValueStore | None) -> None:
        self._store = store

    @staticmethod
    def key_for(out: Outgoing) -> str | None:
        if not out.idempotency_key:
            return None
        content = [out.chat.chat_id, out.text, out.thread, [f.name for f in out.files],
                   list(out.poll.options) if out.poll else None]
        digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]
        return f"sent:{out.idempotency_key}:{digest}"

    async def load(self, key: str | None) -> list[dict[str, Any]]:
        """The parts already delivered under ``key`` (oldest first), or []."""
        if key is None or self._store is None:
            return []
        raw = await self._store.get(key)
        if not raw:
            return []
        try:
            return list(json.loads(raw)["sent"])
        except (ValueError, KeyError, TypeError):
            log.warning("telegram: ignoring an unreadable send record %s", key)
            return []

    async def exists(self, key: str | None) -> bool:
        """Whether anything was ever recorded under ``key`` (an attempt or a delivered part)."""
        if key is None or self._store is None:
            return True  # unknown: assume it may have gone out
        return bool(await self._store.get(key))

    async def attempting(self, key: str | None, sent: list[dict[str, Any]], part: int) -> None:
        """Record, before its request goes out, that part ``part`` is being sent (it may arrive from now on).
        Unlike ``save`` this may raise: without the record, a crash could not tell the send was tried."""
        if key is None or self._store is None:
            return
        record = json.dumps({"sent": sent, "done": False, "attempting": part})
        await self._store.put(key, record, ttl_s=KEEP_S)

    async def save(self, key: str | None, sent: list[dict[str, Any]], done: bool) -> None:
        """Record the delivered parts. Never raises: the message is out, losing its record only weakens
        the crash dedup."""
        if key is None or self._store is None:
            return
        try:
            await self._store.put(key, json.dumps({"sent": sent, "done": done}), ttl_s=KEEP_S)
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("telegram: could not record a delivered message (%s)", key)
