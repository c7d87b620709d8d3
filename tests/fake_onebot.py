"""A fake OneBot v11 implementation (think NapCat) speaking the standard's wire protocols on 127.0.0.1.

Written from the OneBot 11 standard (github.com/botuniverse/onebot-11: communication/, event/, message/,
api/) plus the go-cqhttp extension ``get_group_msg_history`` as NapCat implements it. All three ways of
talking, as the standard defines them:

* forward WebSocket: a WS server (``serve_ws``) with ``/`` (API and events), ``/api`` and ``/event``;
  API frames ``{"action", "params", "echo"}`` are answered ``{"status", "retcode", "data", "echo"}``;
* reverse WebSocket: a WS client (``connect_reverse``) dialling paibot with ``X-Self-ID``, ``X-Client-Role``
  (``Universal``, or ``API`` and ``Event`` on two connections) and ``Authorization: Bearer``; it redials
  with a fixed interval after a drop (the standard's ``reconnect_interval``);
* HTTP: an HTTP API server (``serve_http``: ``POST /<action>`` with a JSON body, 401 without a token,
  403 with a wrong one, 404 for an unknown action) and HTTP POST event delivery (``post_events_to``) with
  ``X-Self-ID`` and ``X-Signature: sha1=<HMAC-SHA1>``.

Token checks follow the standard (HTTP 401/403 on the handshake); ``refuse_like_napcat`` instead accepts
the socket, sends one retcode-1403 frame and closes, as NapCat does. Events are pushed to every connected
event client in order, in the configured ``message_format`` (``array`` segments or a CQ ``string``);
events pushed while nobody listens are lost, like the real thing. Members post with ``post``/``private``;
the bot's own messages go into history too. ``restart()`` renumbers every message id, as NapCat does after
its own restart. ``fail(action, retcode, message, times)`` scripts failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.onebot import cqcode

Segments = list[dict[str, Any]]


@dataclass
class Member:
    user_id: int
    nickname: str
    card: str = ""
    role: str = "member"


@dataclass
class Group:
    group_id: int
    name: str
    members: dict[int, Member] = field(default_factory=dict)


@dataclass
class Stored:
    """One message as the implementation keeps it."""

    message_id: int
    message_type: str  # group | private
    peer: int  # group id or the private peer's QQ number
    user_id: int
    segments: Segments
    time: int


class FakeOneBot:
    def __init__(
        self,
        self_id: int = 2_000_001,
        nickname: str = "派",
        token: str = "",
        *,
        message_format: str = "array",
        history: bool = True,
        refuse_like_napcat: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.self_id = self_id
        self.nickname = nickname
        self.token = token
        self.message_format = message_format
        self.history_offered = history
        self.refuse_like_napcat = refuse_like_napcat
        self.clock = clock
        self.groups: dict[int, Group] = {}
        self.messages: dict[int, Stored] = {}
        self._ids = itertools.count(10_001)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[Stored] = []  # what the bot sent, in order
        self._failures: dict[str, list[tuple[int, str]]] = {}
        self.refused = 0  # connections or requests refused for their token
        # event clients: forward and reverse sockets that take events, and HTTP POST targets
        self._event_sockets: set[Any] = set()
        self._post_target: tuple[str, str] | None = None
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pusher: asyncio.Task[None] | None = None
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._reverse: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self.post_status: list[int] = []  # HTTP statuses paibot answered event POSTs with
        self.ws_url = ""
        self.http_url = ""
        self.media: dict[str, bytes] = {}
        self._media_base: str | None = None

    # ----------------------------------------------------------------- world

    def group(self, group_id: int, name: str) -> Group:
        g = self.groups.setdefault(group_id, Group(group_id, name))
        g.members.setdefault(self.self_id, Member(self.self_id, self.nickname))
        return g

    def member(
        self, group_id: int, user_id: int, nickname: str, card: str = "", role: str = "member"
    ) -> Member:
        m = Member(user_id, nickname, card, role)
        self.groups[group_id].members[user_id] = m
        return m

    def fail(self, action: str, retcode: int, message: str = "", times: int = 1) -> None:
        self._failures.setdefault(action, []).extend([(retcode, message)] * times)

    def restart(self) -> None:
        """What NapCat does to message ids when it restarts: every stored message gets a new one."""
        old = sorted(self.messages.values(), key=lambda m: m.message_id)
        self.messages = {}
        for m in old:
            m.message_id = next(self._ids)
            self.messages[m.message_id] = m

    def _sender(self, peer: int, user_id: int, message_type: str) -> dict[str, Any]:
        if message_type == "group":
            m = self.groups[peer].members.get(user_id) or Member(user_id, str(user_id))
            return {"user_id": user_id, "nickname": m.nickname, "card": m.card, "role": m.role}
        return {"user_id": user_id, "nickname": self._nick(user_id)}

    def _nick(self, user_id: int) -> str:
        for g in self.groups.values():
            if user_id in g.members:
                return g.members[user_id].nickname
        return str(user_id)

    def _store(
        self, message_type: str, peer: int, user_id: int, segments: Segments, when: int | None
    ) -> Stored:
        s = Stored(next(self._ids), message_type, peer, user_id, segments, int(when or self.clock()))
        self.messages[s.message_id] = s
        return s

    def event_of(self, s: Stored, *, for_history: bool = False) -> dict[str, Any]:
        own = s.user_id == self.self_id
        message: Any = s.segments if self.message_format == "array" else cqcode.render(s.segments)
        ev: dict[str, Any] = {
            "time": s.time, "self_id": self.self_id, "post_type": "message_sent" if own else "message",
            "message_type": s.message_type, "sub_type": "normal" if s.message_type == "group" else "friend",
            "message_id": s.message_id, "user_id": s.user_id, "message": message,
            "raw_message": cqcode.render(s.segments), "font": 14,
            "sender": self._sender(s.peer, s.user_id, s.message_type),
        }  # fmt: skip
        if s.message_type == "group":
            ev["group_id"] = s.peer
        if for_history:
            ev["message_seq"] = ev["real_id"] = s.message_id
        return ev

    async def post(
        self, group_id: int, user_id: int, text: str = "", *, at_bot: bool = False,
        reply_to: int | None = None, segments: Segments | None = None, when: int | None = None,
        push: bool = True,
    ) -> Stored:  # fmt: skip
        """A member posts in a group: stored in history and pushed to whoever listens (unless ``push``
        is False: the message exists on QQ but the implementation missed it)."""
        segs: Segments = []
        if reply_to is not None:
            segs.append({"type": "reply", "data": {"id": str(reply_to)}})
        if at_bot:
            segs.append({"type": "at", "data": {"qq": str(self.self_id)}})
            text = " " + text if text else text
        if text:
            segs.append({"type": "text", "data": {"text": text}})
        segs.extend(segments or [])
        s = self._store("group", group_id, user_id, segs, when)
        if push:
            await self.push(self.event_of(s))
        return s

    async def recall(self, message_id: int, operator_id: int | None = None) -> None:
        """A message is recalled (by its author, a group admin, or the bot through ``delete_msg``): it leaves
        history and a ``group_recall`` (``friend_recall``) notice is pushed."""
        s = self.messages.pop(message_id)
        ev: dict[str, Any] = {"time": int(self.clock()), "self_id": self.self_id, "post_type": "notice",
                              "user_id": s.user_id, "message_id": message_id}
        if s.message_type == "group":
            ev.update(notice_type="group_recall", group_id=s.peer, operator_id=operator_id or s.user_id)
        else:
            ev.update(notice_type="friend_recall")
        await self.push(ev)

    async def private(self, user_id: int, text: str) -> Stored:
        s = self._store("private", user_id, user_id, [{"type": "text", "data": {"text": text}}], None)
        await self.push(self.event_of(s))
        return s

    async def push(self, event: dict[str, Any]) -> None:
        self._queue.put_nowait(event)
        if self._pusher is None:
            self._pusher = asyncio.create_task(self._push_loop(), name="fake-onebot-push")

    async def _push_loop(self) -> None:
        while True:
            event = await self._queue.get()
            text = json.dumps(event, ensure_ascii=False)
            for ws in list(self._event_sockets):
                try:
                    await ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    self._event_sockets.discard(ws)
            if self._post_target is not None:
                await self._post_event(text)

    async def _post_event(self, text: str) -> None:
        url, key = self._post_target  # type: ignore[misc]
        body = text.encode()
        headers = {"Content-Type": "application/json", "X-Self-ID": str(self.self_id)}
        if key:
            headers["X-Signature"] = "sha1=" + hmac.new(key.encode(), body, hashlib.sha1).hexdigest()
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                self.post_status.append(resp.status)
        except (aiohttp.ClientError, OSError):
            self.post_status.append(0)  # nobody listening: the event is lost
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async def loop() -> None:
            async with self._changed:
                while not predicate():
                    await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    # ----------------------------------------------------------------- actions

    def _ok(self, data: Any) -> dict[str, Any]:
        return {"status": "ok", "retcode": 0, "data": data, "message": "", "wording": ""}

    def _failed(self, retcode: int, message: str) -> dict[str, Any]:
        return {"status": "failed", "retcode": retcode, "data": None, "message": message, "wording": message}

    async def act(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((action, params))
        try:
            if self._failures.get(action):
                return self._failed(*self._failures[action].pop(0))
            handler = getattr(self, "_a_" + action, None)
            if handler is None or (action == "get_group_msg_history" and not self.history_offered):
                return self._failed(1404, f"不支持的API {action}")
            try:
                return self._ok(await handler(params))
            except (KeyError, ValueError, TypeError) as exc:
                return self._failed(1400, f"bad parameters: {exc}")
        finally:
            await self._notify()

    async def _a_get_login_info(self, p: dict[str, Any]) -> Any:
        return {"user_id": self.self_id, "nickname": self.nickname}

    async def _a_get_status(self, p: dict[str, Any]) -> Any:
        return {"online": True, "good": True}

    async def _a_get_version_info(self, p: dict[str, Any]) -> Any:
        return {"app_name": "fake-onebot", "app_version": "1.0", "protocol_version": "v11"}

    async def _send(self, message_type: str, peer: int, message: Any) -> Any:
        segs = cqcode.normalize(message)
        if not segs:
            raise ValueError("empty message")
        if message_type == "group" and int(peer) not in self.groups:
            raise KeyError(f"group {peer}")
        s = self._store(message_type, int(peer), self.self_id, segs, None)
        self.sent.append(s)
        return {"message_id": s.message_id}

    async def _a_send_group_msg(self, p: dict[str, Any]) -> Any:
        return await self._send("group", int(p["group_id"]), p["message"])

    async def _a_send_private_msg(self, p: dict[str, Any]) -> Any:
        return await self._send("private", int(p["user_id"]), p["message"])

    async def _a_send_msg(self, p: dict[str, Any]) -> Any:
        kind = p.get("message_type") or ("group" if "group_id" in p else "private")
        return await self._send(kind, int(p["group_id"] if kind == "group" else p["user_id"]), p["message"])

    async def _a_delete_msg(self, p: dict[str, Any]) -> Any:
        await self.recall(int(p["message_id"]), self.self_id)  # an unknown id: KeyError, a failure
        return None

    async def _a_get_msg(self, p: dict[str, Any]) -> Any:
        s = self.messages[int(p["message_id"])]
        ev = self.event_of(s, for_history=True)
        return {k: ev[k] for k in ("time", "message_type", "message_id", "real_id", "sender", "message")}

    async def _a_get_group_info(self, p: dict[str, Any]) -> Any:
        g = self.groups[int(p["group_id"])]
        return {
            "group_id": g.group_id,
            "group_name": g.name,
            "member_count": len(g.members),
            "max_member_count": 500,
        }

    async def _a_get_group_list(self, p: dict[str, Any]) -> Any:
        return [await self._a_get_group_info({"group_id": gid}) for gid in self.groups]

    async def _a_get_group_member_info(self, p: dict[str, Any]) -> Any:
        m = self.groups[int(p["group_id"])].members[int(p["user_id"])]
        return {"group_id": int(p["group_id"]), "user_id": m.user_id, "nickname": m.nickname, "card": m.card,
                "role": m.role, "sex": "unknown", "age": 0}  # fmt: skip

    async def _a_get_group_msg_history(self, p: dict[str, Any]) -> Any:
        """NapCat's semantics: ``count`` messages ending at the anchor (inclusive), or the latest ``count``
        without one; oldest first."""
        gid = int(p["group_id"])
        count = int(p.get("count") or 20)
        anchor = p.get("message_seq") or p.get("message_id")
        msgs = sorted((m for m in self.messages.values() if m.message_type == "group" and m.peer == gid),
                      key=lambda m: (m.time, m.message_id))  # fmt: skip
        if anchor:
            ids = [m.message_id for m in msgs]
            if int(anchor) not in ids:
                raise ValueError(f"消息{anchor}不存在")
            msgs = msgs[: ids.index(int(anchor)) + 1]
        return {"messages": [self.event_of(m, for_history=True) for m in msgs[-count:]]}

    # ----------------------------------------------------------------- token

    def _token_ok(self, headers: Any, query: Any) -> int:
        """0 when the request may pass, else the HTTP status the standard prescribes (401 / 403)."""
        if not self.token:
            return 0
        auth = headers.get("Authorization", "")
        offered = auth[len("Bearer ") :] if auth.startswith("Bearer ") else query.get("access_token")
        if offered is None:
            return 401
        return 0 if offered == self.token else 403

    # ----------------------------------------------------------------- forward WebSocket (server)

    async def serve_ws(self) -> str:
        app = web.Application()
        for path in ("/", "/api", "/api/", "/event", "/event/"):
            app.router.add_get(path, self._ws_handler)
        self.ws_url = "ws://127.0.0.1:%d/" % await self._serve(app)
        return self.ws_url

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        status = self._token_ok(request.headers, request.query)
        if status and not self.refuse_like_napcat:
            self.refused += 1
            return web.Response(status=status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if status:
            self.refused += 1
            await ws.send_str(json.dumps(self._failed(1403, "token验证失败")))
            await ws.close()
            return ws
        path = request.path.rstrip("/")
        events = path != "/api"
        await self._talk(ws, api=path != "/event", events=events)
        return ws

    async def _talk(self, ws: Any, *, api: bool, events: bool) -> None:
        if events:
            self._event_sockets.add(ws)
            await ws.send_str(json.dumps({"time": int(self.clock()), "self_id": self.self_id,
                                          "post_type": "meta_event", "meta_event_type": "lifecycle",
                                          "sub_type": "connect"}))  # fmt: skip
        await self._notify()
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT or not api:
                    continue
                try:
                    req = json.loads(frame.data)
                except ValueError:
                    await ws.send_str(json.dumps(self._failed(1400, "json解析失败")))
                    continue
                answer = await self.act(str(req.get("action", "")), req.get("params") or {})
                if "echo" in req:
                    answer["echo"] = req["echo"]
                await ws.send_str(json.dumps(answer, ensure_ascii=False))
        finally:
            self._event_sockets.discard(ws)
            await self._notify()

    @property
    def connections(self) -> int:
        return len(self._event_sockets)

    async def drop_connections(self) -> None:
        """Close every WebSocket (a network hiccup; the reverse client redials by itself)."""
        for ws in list(self._event_sockets):
            await ws.close()
        self._event_sockets.clear()

    # ----------------------------------------------------------------- reverse WebSocket (client)

    async def connect_reverse(self, url: str, *, split: bool = False, retry_s: float = 0.2) -> None:
        """Dial paibot's endpoint (and keep redialling, every ``retry_s``, as the standard's reconnect
        interval says) as one Universal client, or an API and an Event client."""
        self._session = self._session or aiohttp.ClientSession()
        roles = ("API", "Event") if split else ("Universal",)
        for role in roles:
            self._reverse.append(
                asyncio.create_task(self._dial(url, role, retry_s), name=f"fake-onebot-{role}")
            )

    async def _dial(self, url: str, role: str, retry_s: float) -> None:
        assert self._session is not None
        headers = {"X-Self-ID": str(self.self_id), "X-Client-Role": role, "User-Agent": "OneBot/11"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        while True:
            try:
                async with self._session.ws_connect(url, headers=headers) as ws:
                    await self._talk(
                        ws, api=role in ("API", "Universal"), events=role in ("Event", "Universal")
                    )
            except aiohttp.WSServerHandshakeError as exc:
                self.post_status.append(exc.status)
                await self._notify()
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(retry_s)

    # ----------------------------------------------------------------- HTTP API (server), HTTP POST (client)

    async def serve_http(self) -> str:
        app = web.Application()
        app.router.add_post("/{action}", self._http_handler)
        app.router.add_post("/{action}/", self._http_handler)
        self.http_url = "http://127.0.0.1:%d" % await self._serve(app)
        return self.http_url

    async def _http_handler(self, request: web.Request) -> web.Response:
        status = self._token_ok(request.headers, request.query)
        if status:
            self.refused += 1
            return web.Response(status=status)
        if request.content_type != "application/json":
            return web.Response(status=406)
        try:
            params = await request.json()
        except ValueError:
            return web.Response(status=400)
        action = request.match_info["action"]
        answer = await self.act(action, params if isinstance(params, dict) else {})
        if answer["retcode"] == 1404:
            return web.Response(status=404)
        return web.json_response(answer)

    def post_events_to(self, url: str, secret: str = "") -> None:
        self._post_target = (url, secret)
        self._session = self._session or aiohttp.ClientSession()

    # ----------------------------------------------------------------- media (what QQ's CDN does)

    async def media_url(self, name: str, data: bytes) -> str:
        """Host ``data`` like QQ's multimedia server and return its URL."""
        if self._media_base is None:
            app = web.Application()
            app.router.add_get("/download/{name}", self._media_handler)
            self._media_base = "http://127.0.0.1:%d/download/" % await self._serve(app)
        self.media[name] = data
        return self._media_base + name + "?rkey=signed"

    async def _media_handler(self, request: web.Request) -> web.Response:
        data = self.media.get(request.match_info["name"])
        return web.Response(status=404) if data is None else web.Response(body=data)

    async def _a_get_image(self, p: dict[str, Any]) -> Any:
        name = str(p["file"])
        if name not in self.media:
            raise KeyError(name)
        return {"file": f"/data/image/{name}", "url": await self.media_url(name, self.media[name])}

    # ----------------------------------------------------------------- plumbing

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        return int(runner.addresses[0][1])

    async def close(self) -> None:
        for task in [*self._reverse, *([self._pusher] if self._pusher else [])]:
            task.cancel()
        await asyncio.gather(
            *self._reverse, *([self._pusher] if self._pusher else []), return_exceptions=True
        )
        await self.drop_connections()
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()
