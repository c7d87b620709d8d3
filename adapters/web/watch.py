"""Watching together in the web group: the transport between the page's players and the core's session.

The core owns sessions and decides (``bot.ports.WatchControl``, implemented by the watch skill); this module
only carries messages and serves media:

    page --WS {"type": "watch", "action", "value", "session"}--> control.control(), as the socket's member
         (the member key or cookie the socket connected with; a claimed "author_id" must be that member's)
         refused: {"type": "watch_refused", "error": <the core's sentence, in the group's language>}, or
         "reason": "busy" (too many commands) | "invalid" (unreadable) | "member" (no member, or another
         member's id) that the page words in its language
    core --show_watch(view)--> every socket of the group: {"type": "watch", "watch": <view JSON>}
    page --WS {"type": "clock", "t": <page time>}--> {"type": "clock", "t", "server": control.now()}
    GET /api/groups/{group}/watch           the running session (or null) and whether sessions are available
    GET /api/groups/{group}/watch/{session}/cues   its subtitle lines [[start, end, text], ...]
    GET /api/media/{file_id}                 an uploaded video or audio file, inline, with range requests

Media are served with ``aiohttp.web.FileResponse``, which answers ``Range`` requests with 206 and the asked
bytes, so players seek without downloading the whole file. Only files whose first bytes were sniffed as video
or audio are served here, with ``nosniff`` and a sandboxing CSP; anything else is a download at
``/api/files/{id}``. The page's identity (author id and nickname) is as trustworthy as for posting messages
(see SECURITY.md): the core checks who may control a session against it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.web.files import media_type, valid_file_id
from adapters.web.live import LiveHub
from adapters.web.members import StoredMember
from bot.errors import WatchRefused
from bot.events import ChatRef, PersonRef
from bot.ports import WatchCommand, WatchControl, WatchView

if TYPE_CHECKING:
    from adapters.web.service import GroupService
    from adapters.web.store import StoredGroup

log = logging.getLogger("paibot.web")

COMMANDS_PER_S = 4.0
COMMAND_BURST = 10.0
ACTIONS = frozenset({"play", "pause", "seek", "rate", "duration", "control", "end"})
MEDIA_CSP = "default-src 'none'; sandbox"
_AUTHOR_ID = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def view_json(view: WatchView) -> dict[str, Any]:
    """A session as the page reads it (media as a URL of this origin, links only when http(s))."""
    media_url = (
        f"/api/media/{view.media.source}"
        if view.media is not None and valid_file_id(view.media.source)
        else ""
    )
    link = view.link if view.link.lower().startswith(("https://", "http://")) else ""
    return {
        "session": view.session, "title": view.title, "kind": view.kind, "media_url": media_url, "link": link,
        "mime": view.media.mime if view.media else "", "starter_id": view.starter_id,
        "starter_name": view.starter_name, "control": view.control, "playback": view.playback, "seq": view.seq,
        "cues": view.cues, "ended": view.ended,
    }  # fmt: skip


class WebWatch:
    """The web group's ``WatchHost`` half (``host_watch`` / ``show_watch``) and its HTTP and socket routes."""

    def __init__(self, hub: LiveHub, platform: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self.platform = platform
        self.control: WatchControl | None = None
        self._clock = clock
        self._buckets: weakref.WeakKeyDictionary[web.WebSocketResponse, tuple[float, float]] = (
            weakref.WeakKeyDictionary()
        )

    def _allowed(self, ws: web.WebSocketResponse) -> bool:
        """A token bucket per socket: ``COMMAND_BURST`` commands at once, ``COMMANDS_PER_S`` after that (a
        member scrubbing the seek bar sends a few; a script flooding the group's players is cut off)."""
        now = self._clock()
        tokens, since = self._buckets.get(ws, (COMMAND_BURST, now))
        tokens = min(COMMAND_BURST, tokens + (now - since) * COMMANDS_PER_S)
        if tokens < 1:
            self._buckets[ws] = (tokens, now)
            return False
        self._buckets[ws] = (tokens - 1, now)
        return True

    # ----------------------------------------------------------------- the core's side

    def host_watch(self, control: WatchControl) -> None:
        self.control = control

    async def show_watch(self, view: WatchView) -> None:
        try:
            await self.hub.push(view.chat.chat_id, {"type": "watch", "watch": view_json(view)})
        except Exception as exc:  # best effort: players catch up with GET .../watch
            log.debug("watch push failed: %s", exc)

    # ----------------------------------------------------------------- routes

    def add_routes(
        self, router: web.UrlDispatcher, service: GroupService,
        find: Callable[[web.Request], Awaitable[StoredGroup]],
    ) -> None:
        """``find``: the group the request's path names (the HTTP layer's lookup, misses counted and limited)."""

        async def current(request: web.Request) -> web.Response:
            group = await find(request)
            view = await self.control.current(_chat(self.platform, group)) if self.control else None
            # "available" is false when no watch skill runs (skills.watch.enabled: false): the page hides its button.
            available = self.control is not None
            return web.json_response({"watch": view_json(view) if view else None, "available": available})

        async def cues(request: web.Request) -> web.Response:
            group = await find(request)
            session = request.match_info["session"]
            if self.control is None or not _SESSION.match(session):
                raise web.HTTPNotFound()
            lines = await self.control.cues(_chat(self.platform, group), session)
            return web.json_response({"cues": [[round(a, 3), round(b, 3), t] for a, b, t in lines]})

        async def media(request: web.Request) -> web.StreamResponse:
            stored = await service.find_file(request.match_info["file_id"])
            inline = media_type(stored.kind, stored.mime) if stored is not None else None
            if stored is None or inline is None:
                raise web.HTTPNotFound()
            path = service.file_path(stored)
            if not path.is_file():
                raise web.HTTPNotFound()
            return web.FileResponse(path, headers={
                "Content-Type": inline, "X-Content-Type-Options": "nosniff", "Content-Security-Policy": MEDIA_CSP,
                "Cache-Control": "private, max-age=86400", "Cross-Origin-Resource-Policy": "same-origin",
                "Accept-Ranges": "bytes",
            })  # fmt: skip

        router.add_get("/api/groups/{group}/watch", current)
        router.add_get("/api/groups/{group}/watch/{session}/cues", cues)
        router.add_get("/api/media/{file_id}", media)

    # ----------------------------------------------------------------- socket messages

    async def on_socket(
        self, group: str, ws: web.WebSocketResponse, data: dict[str, Any], member: StoredMember | None = None
    ) -> bool:
        """Handle a ``clock`` or ``watch`` message from a page; False when it is neither. A player command
        acts as the socket's member (the key or cookie it connected with), never as an id it claims."""
        kind = data.get("type")
        if kind == "clock":
            t = data.get("t")
            if self.control is not None and isinstance(t, (int, float)) and not isinstance(t, bool):
                await ws.send_json({"type": "clock", "t": t, "server": self.control.now()})
            return True
        if kind != "watch":
            return False
        if not self._allowed(ws):
            refusal = {"type": "watch_refused", "reason": "busy", "error": "too many player commands"}
            await ws.send_json(refusal)
            return True
        command = _command(data)
        if command is None or self.control is None:
            refusal = {"type": "watch_refused", "reason": "invalid", "error": "not a valid player command"}
            await ws.send_json(refusal)
            return True
        if member is None:
            await ws.send_json({"type": "watch_refused", "reason": "member",
                                "error": "only a member can steer the player: join the group first"})  # fmt: skip
            return True
        if data.get("author_id") not in (None, "", member.author_id):
            await ws.send_json({"type": "watch_refused", "reason": "member",
                                "error": "this member key belongs to another author_id"})  # fmt: skip
            return True
        who = PersonRef(self.platform, member.author_id, member.nickname)
        try:
            await self.control.control(ChatRef(self.platform, group), who, command)
        except WatchRefused as exc:
            await ws.send_json({"type": "watch_refused", "error": str(exc)})
        return True


def _command(data: dict[str, Any]) -> WatchCommand | None:
    action, session = data.get("action"), data.get("session", "")
    if action not in ACTIONS or not isinstance(session, str) or (session and not _SESSION.match(session)):
        return None
    author_id = data.get("author_id")  # optional: checked against the socket's member
    if author_id not in (None, "") and not (isinstance(author_id, str) and _AUTHOR_ID.match(author_id)):
        return None
    value = data.get("value")
    if not (value is None or isinstance(value, (int, float, str)) and len(json.dumps(value)) < 64):
        return None
    return WatchCommand(action, value, session)


def _chat(platform: str, group: Any) -> ChatRef:
    return ChatRef(platform, group.number, title=group.name)

