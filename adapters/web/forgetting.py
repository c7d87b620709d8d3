"""How the web group forgets (``bot.ports.ContentEraser``, a part of ``adapters.web.adapter.WebAdapter``).

The web group is a platform that keeps its messages itself, so ``/forget-me``, ``paibot memory forget`` and
retention reach its store too: a member's messages, and the bot's that reply to or quote them, become
"message removed" placeholders (``WebStore.redact``) with their files' bytes deleted; retention deletes old
messages (``WebStore.expire``). Pages that are open are told at once. With the bot stopped (the operator's
``paibot memory forget``) the store file is opened just for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.web.store import StoredFile, StoredMessage, WebStore
from bot.ports import Erasure

if TYPE_CHECKING:
    from adapters.web.attachments import WebAttachments
    from adapters.web.live import LiveHub

PLATFORM = "web"


class WebForgetting:
    """The erasure side of the web adapter (it provides the store, the attachments, the hub, rendering)."""

    _store: WebStore | None
    _db_path: Path
    attachments: WebAttachments
    hub: LiveHub

    async def _render(self, msg: StoredMessage) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _groups(erasure: Erasure) -> list[str]:
        return [key.split(":", 1)[1] for key in erasure.chat_keys if key.startswith(f"{PLATFORM}:")]

    @contextlib.asynccontextmanager
    async def _store_for_erasure(self) -> AsyncIterator[WebStore]:
        """The running store, or (``paibot memory forget`` with the bot stopped) the file opened for the call."""
        if self._store is not None:
            yield self._store
            return
        store = await asyncio.to_thread(WebStore, self._db_path)
        try:
            yield store
        finally:
            await asyncio.to_thread(store.close)

    async def passages(self, erasure: Erasure) -> list[str]:
        """The texts and file names of the member's messages in the web groups of the erasure."""
        groups = self._groups(erasure)
        if erasure.author_id is None or not groups:
            return []
        async with self._store_for_erasure() as store:
            found = await asyncio.to_thread(store.authored, groups, erasure.author_id)
        return [t for text, names in found for t in (text, *names) if t]

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """The web group is a platform that keeps its messages itself: a member's messages (and the bot's
        that reply to or quote them) become "message removed" placeholders with their files deleted;
        retention deletes old messages. Open pages are told at once."""
        groups = self._groups(erasure)
        if not groups:
            return {}
        ids = [int(m) for m in erasure.message_ids if m.isdigit()]
        async with self._store_for_erasure() as store:
            redacted: list[int] = []
            files: list[StoredFile] = []
            if erasure.author_id is not None or ids:
                redacted, files = await asyncio.to_thread(
                    store.redact, groups, author_id=erasure.author_id, message_ids=ids, quoted=erasure.quoted_in
                )
            expired = 0
            if erasure.before is not None:
                expired, old_files = await asyncio.to_thread(store.expire, groups, erasure.before)
                files += old_files
            await self.attachments.drop_stored(files)
            if self._store is store:
                for msg in await asyncio.to_thread(lambda: [store.message(i) for i in redacted]):
                    if msg is not None:
                        await self.hub.push(msg.group, {"type": "edit", "message": await self._render(msg)})
        return {"web messages": len(redacted) + expired, "web files": len(files)}

