"""What a send already delivered, kept durably, so a send repeated after a crash posts nothing twice.

OneBot has no idempotent send. When the core passes ``Outgoing.idempotency_key``, the adapter writes,
through the inbox's cursor table (``onebot:sent:<key>:<digest of the content>``), which part it is about to
send *before* the request goes out, and the delivered parts after each one. A later send of the same
content skips what is recorded as delivered; ``attempted`` tells the core (``bot.ports.SendJournal``) that
a request may have reached QQ, so it does not repeat a reply a crash cut.
"""

from __future__ import annotations

import hashlib
import json
import logging

from bot.events import Outgoing
from bot.ports import IntakeSink

log = logging.getLogger("paibot.onebot")


class SendJournal:
    def __init__(self, sink: IntakeSink | None) -> None:
        self._sink = sink

    @staticmethod
    def key_for(out: Outgoing) -> str | None:
        if not out.idempotency_key:
            return None
        content = [out.chat.chat_id, out.text, [f.name for f in out.files]]
        digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]
        return f"onebot:sent:{out.idempotency_key}:{digest}"

    async def delivered(self, key: str | None) -> list[str]:
        """Message ids of the parts delivered under ``key``, in order."""
        if key is None or self._sink is None:
            return []
        raw = await self._sink.cursor(key)
        try:
            return [str(i) for i in json.loads(raw)["sent"]] if raw else []
        except (ValueError, KeyError, TypeError):
            log.warning("onebot: ignoring an unreadable send record %s", key)
            return []

    async def attempted(self, key: str | None) -> bool:
        if key is None or self._sink is None:
            return True  # unknown: it may have gone out
        return bool(await self._sink.cursor(key))

    async def attempting(self, key: str | None, sent: list[str], part: int) -> None:
        """Before part ``part``'s request: from now on it may arrive. May raise (then nothing is sent)."""
        if key is not None and self._sink is not None:
            await self._sink.submit([], cursor_key=key, cursor=json.dumps({"sent": sent, "attempting": part}))

    async def record(self, key: str | None, sent: list[str]) -> None:
        """After a part was delivered. Never raises: the message is out, only the crash dedup weakens."""
        if key is None or self._sink is None:
            return
        try:
            await self._sink.submit([], cursor_key=key, cursor=json.dumps({"sent": sent}))
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("onebot: could not record a delivered message (%s)", key)
