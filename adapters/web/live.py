"""Live updates for the web group: the open WebSockets of each group and a best-effort fan-out.

Pushes are a convenience, never the record: a page that misses one (slow network, reconnect) catches up
with ``GET /api/groups/{group}/messages?after=<last id>``. So a slow or broken socket is dropped rather than
allowed to hold up the sender.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, web

log = logging.getLogger("paibot.web")

_SEND_TIMEOUT_S = 5.0
MOVED = 4001  # the close code of a socket whose group was given new links (an application code: 4000-4999)


class LiveHub:
    """Tracks the WebSockets open on each group and pushes JSON events to them."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        # How many times a group was given new links (the adapter bumps it before the address changes): a
        # socket that sees it change while it opens checks that its group's address still holds.
        self.moves = 0

    def join(self, group: str, ws: web.WebSocketResponse) -> None:
        self._sockets.setdefault(group, set()).add(ws)

    def leave(self, group: str, ws: web.WebSocketResponse) -> None:
        members = self._sockets.get(group)
        if members is not None:
            members.discard(ws)
            if not members:
                del self._sockets[group]

    def count(self, group: str) -> int:
        return len(self._sockets.get(group, ()))

    async def push(self, group: str, event: dict[str, Any], *, skip: web.WebSocketResponse | None = None) -> None:
        """Send ``event`` to every socket of ``group`` (except ``skip``); drop sockets that fail."""
        targets = [ws for ws in self._sockets.get(group, ()) if ws is not skip and not ws.closed]
        if not targets:
            return
        results = await asyncio.gather(
            *(asyncio.wait_for(ws.send_json(event), _SEND_TIMEOUT_S) for ws in targets), return_exceptions=True
        )
        for ws, result in zip(targets, results):
            if isinstance(result, BaseException):
                log.info("dropping a web socket of group %s: %s", group, type(result).__name__)
                self.leave(group, ws)
                await _close_quietly(ws)

    async def close_group(self, group: str, event: dict[str, Any]) -> None:
        """Tell every socket of ``group`` ``event``, then close them all (the group's address changed: a page
        must not keep receiving what its address no longer lets it read)."""
        await self.push(group, event)
        sockets = self._sockets.pop(group, set())
        await asyncio.gather(*(_close_quietly(ws, MOVED, b"group moved") for ws in sockets))

    async def close_all(self) -> None:
        sockets = [ws for members in self._sockets.values() for ws in members]
        self._sockets.clear()
        await asyncio.gather(*(_close_quietly(ws) for ws in sockets))


async def _close_quietly(
    ws: web.WebSocketResponse, code: int = WSCloseCode.GOING_AWAY, why: bytes = b"server going away"
) -> None:
    try:
        await asyncio.wait_for(ws.close(code=code, message=why), _SEND_TIMEOUT_S)
    except (asyncio.TimeoutError, ConnectionError, RuntimeError) as exc:
        log.debug("web socket close failed: %s", exc)
