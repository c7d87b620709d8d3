"""A fake Discord: REST API v10 and the gateway websocket, on loopback, speaking the real wire protocol.

It drives the unmodified discord.py client. What it implements is what the adapter uses:

* REST (``/api/v10``): ``GET /users/@me`` (401 on a wrong token), ``GET /oauth2/applications/@me``,
  ``GET /gateway`` and ``/gateway/bot``, channel messages (create with nonce deduplication and
  ``enforce_nonce``, edit, get, history with ``before``/``after``/``limit`` newest first), typing,
  ``PUT /applications/{id}/commands``, interaction callbacks, webhook follow-ups and ``@original`` edits,
  and attachment downloads. Every response carries Discord's rate-limit headers; ``rate_limit_next`` makes
  the next matching request answer a proper 429 (``retry_after`` body, ``Retry-After``/``Via`` headers).
* Gateway (``/gateway``): HELLO, heartbeat ACKs, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay,
  dispatches with sequence numbers, ``zlib-stream`` transport compression when the client asks for it, and
  close code 4014 when the bot asks for the message-content intent the "developer portal" has off.

Server-side mention resolution follows ``allowed_mentions`` like Discord does, so tests can assert on who
would actually have been pinged (``message["mentions"]``, ``mention_everyone``, ``mention_roles``) as well as
on the raw request body (``requests``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import RecordingInbox

DISCORD_EPOCH_MS = 1420070400000
INTENT_MESSAGE_CONTENT = 1 << 15
BODY = web.RequestKey("body", object)
APP_FLAG_GATEWAY_MESSAGE_CONTENT = 1 << 19
_MENTION_USER = re.compile(r"<@!?(\d+)>")
_MENTION_ROLE = re.compile(r"<@&(\d+)>")


@dataclass
class Recorded:
    """One REST request as the fake received it."""

    method: str
    path: str
    json: Any
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class GatewaySession:
    session_id: str
    intents: int
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)  # dispatches, kept for RESUME replay
    ws: web.WebSocketResponse | None = None
    compressor: Any = None


class FakeDiscord:
    """The fake platform. Create, ``await start()``, use ``api_base`` / ``gateway_url``, ``await stop()``."""

    def __init__(self, token: str = "fake-token") -> None:
        self.token = token
        self.message_content_enabled = True  # the portal toggle; False -> 4014 when the intent is requested
        self.reject_identify = False  # True -> the gateway closes with 4004 (a token reset since the login)
        self.strip_content = False  # deliver empty contents for messages not addressed to the bot
        self.requests: list[Recorded] = []
        self.rate_limits: dict[tuple[str, str], list[float]] = {}
        self.interaction_callbacks: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.messages: dict[int, list[dict[str, Any]]] = {}  # channel id -> messages, oldest first
        self.identified = asyncio.Event()
        self._dispatched = asyncio.Condition()  # notified after every gateway event (every change of messages)
        self.closed_codes: list[int] = []
        self.server_close_codes: list[int] = []
        self._sessions: dict[str, GatewaySession] = {}
        self._nonces: dict[tuple[int, str], dict[str, Any]] = {}
        self._interactions: dict[str, dict[str, Any]] = {}  # token -> interaction payload
        self._last_id = 0
        self._session_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.bot = self._user(self.next_id(), "paibot", bot=True)
        self.application_id = self.next_id()
        self.guild_id = self.next_id()
        self.bot_role_id = self.next_id()
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.general = self.add_channel("general")
        self.random = self.add_channel("random")
        self.dm_channels: dict[int, dict[str, Any]] = {}

    # ----------------------------------------------------------------- world building

    def next_id(self) -> int:
        """A real-looking, strictly increasing snowflake."""
        now = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._last_id = max(self._last_id + 1, now << 22)
        return self._last_id

    @staticmethod
    def _user(uid: int, name: str, bot: bool = False) -> dict[str, Any]:
        return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name.title(),
                "avatar": None, "bot": bot}

    def add_user(self, name: str) -> dict[str, Any]:
        user = self._user(self.next_id(), name)
        self.users[name] = user
        return user

    def add_channel(self, name: str, *, parent_id: int | None = None, thread: bool = False) -> int:
        cid = self.next_id()
        self.channels[cid] = {"id": str(cid), "type": 11 if thread else 0, "name": name,
                              "guild_id": str(self.guild_id), "position": len(self.channels),
                              "permission_overwrites": [], "nsfw": False, "topic": None,
                              "parent_id": str(parent_id) if parent_id else None, "last_message_id": None}
        self.messages[cid] = []
        return cid

    def add_dm(self, user: dict[str, Any]) -> int:
        cid = self.next_id()
        self.dm_channels[cid] = {"id": str(cid), "type": 1, "recipients": [user], "last_message_id": None}
        self.messages[cid] = []
        return cid

    def _roles(self) -> list[dict[str, Any]]:
        base = {"color": 0, "hoist": False, "icon": None, "unicode_emoji": None, "flags": 0,
                "mentionable": False}
        everyone = {**base, "id": str(self.guild_id), "name": "@everyone", "permissions": "68608",
                    "position": 0, "managed": False}
        bot_role = {**base, "id": str(self.bot_role_id), "name": "paibot", "permissions": "274877991936",
                    "position": 1, "managed": True, "tags": {"bot_id": self.bot["id"]}}
        return [everyone, bot_role]

    def _member(self, user: dict[str, Any]) -> dict[str, Any]:
        roles = [str(self.bot_role_id)] if user["id"] == self.bot["id"] else []
        return {"user": user, "roles": roles, "joined_at": "2026-01-01T00:00:00+00:00", "deaf": False,
                "mute": False, "nick": None, "flags": 0}

    def guild_payload(self) -> dict[str, Any]:
        members = [self._member(self.bot)] + [self._member(u) for u in self.users.values()]
        return {"id": str(self.guild_id), "name": "Test Server", "icon": None, "owner_id": self.bot["id"],
                "unavailable": False, "member_count": len(members), "large": False, "features": [],
                "roles": self._roles(), "emojis": [], "stickers": [], "members": members,
                "channels": [c for c in self.channels.values() if c["type"] != 11],
                "threads": [c | {"owner_id": self.bot["id"], "message_count": 0, "member_count": 1,
                                 "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                                     "archive_timestamp": "2026-01-01T00:00:00+00:00",
                                                     "locked": False}}
                            for c in self.channels.values() if c["type"] == 11],
                "voice_states": [], "presences": [], "premium_tier": 0, "preferred_locale": "en-US",
                "joined_at": "2026-01-01T00:00:00+00:00", "system_channel_id": None,
                "verification_level": 0, "default_message_notifications": 0,
                "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0}

    # ----------------------------------------------------------------- messages

    def _resolve_mentions(self, content: str, allowed: dict[str, Any] | None, reply_author: str | None
                          ) -> tuple[list[dict[str, Any]], list[str], bool]:
        """Who this content pings, honouring ``allowed_mentions`` the way Discord does."""
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse", []))
        allowed_users = set(map(str, (allowed or {}).get("users", [])))
        allowed_roles = set(map(str, (allowed or {}).get("roles", [])))
        known = {u["id"]: u for u in [self.bot, *self.users.values()]}
        users = [known[i] for i in dict.fromkeys(_MENTION_USER.findall(content))
                 if i in known and ("users" in parse or i in allowed_users)]
        roles = [r for r in dict.fromkeys(_MENTION_ROLE.findall(content))
                 if "roles" in parse or r in allowed_roles]
        everyone = ("@everyone" in content or "@here" in content) and "everyone" in parse
        replied = allowed is None or allowed.get("replied_user", False)
        if reply_author and replied and reply_author in known and all(u["id"] != reply_author for u in users):
            users.append(known[reply_author])
        return users, roles, everyone

    def _find(self, channel_id: int, message_id: int) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel_id, []) if m["id"] == str(message_id)), None)

    def _make_message(self, channel_id: int, author: dict[str, Any], content: str, *,
                      allowed: dict[str, Any] | None = None, reference: dict[str, Any] | None = None,
                      attachments: Iterable[dict[str, Any]] = (), nonce: str | None = None,
                      flags: int = 0, poll: dict[str, Any] | None = None,
                      interaction: dict[str, Any] | None = None) -> dict[str, Any]:
        mid = self.next_id()
        referenced = None
        if reference and reference.get("message_id"):
            referenced = self._find(int(reference.get("channel_id") or channel_id), int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise web.HTTPBadRequest(body=json.dumps({"code": 50035, "message": "Unknown message"}).encode(),
                                         headers={"Content-Type": "application/json"})
        users, roles, everyone = self._resolve_mentions(
            content, allowed, referenced["author"]["id"] if referenced else None)
        msg: dict[str, Any] = {
            "id": str(mid), "channel_id": str(channel_id), "author": author, "content": content,
            "timestamp": datetime.now(timezone.utc).isoformat(), "edited_timestamp": None, "tts": False,
            "mention_everyone": everyone, "mentions": users, "mention_roles": roles,
            "attachments": list(attachments), "embeds": [], "pinned": False, "components": [],
            "type": 19 if referenced else 0, "flags": flags,
        }
        if nonce is not None:
            msg["nonce"] = nonce
        if referenced is not None:
            msg["message_reference"] = {"type": 0, "message_id": referenced["id"], "channel_id": str(channel_id),
                                        "guild_id": str(self.guild_id)}
            msg["referenced_message"] = {k: v for k, v in referenced.items() if k != "referenced_message"}
        if poll is not None:
            msg["poll"] = self._poll_object(poll)
        if interaction is not None:
            msg["interaction_metadata"] = interaction
        self.messages.setdefault(channel_id, []).append(msg)
        return msg

    @staticmethod
    def _poll_object(poll: dict[str, Any]) -> dict[str, Any]:
        answers = [{"answer_id": i + 1, "poll_media": a["poll_media"]} for i, a in enumerate(poll["answers"])]
        return {"question": poll["question"], "answers": answers, "allow_multiselect": poll.get(
            "allow_multiselect", False), "layout_type": 1,
            "expiry": datetime.fromtimestamp(time.time() + 3600 * poll.get("duration", 24), timezone.utc).isoformat(),
            "results": {"is_finalized": False, "answer_counts": []}}

    def _visible(self, msg: dict[str, Any], channel_id: int) -> dict[str, Any]:
        """The message as the bot receives it (contents hidden without the message-content intent)."""
        if not self.strip_content or channel_id in self.dm_channels or msg["author"]["id"] == self.bot["id"]:
            return msg
        if any(u["id"] == self.bot["id"] for u in msg["mentions"]):
            return msg
        return {**msg, "content": "", "embeds": [], "attachments": []}

    async def user_says(self, user: dict[str, Any], content: str, *, channel: int | None = None,
                        reply_to: str | None = None, attachments: Iterable[tuple[str, str, bytes]] = ()
                        ) -> dict[str, Any]:
        """A member posts a message. Stored whether or not the bot is connected (so history has it);
        dispatched as MESSAGE_CREATE to every connected bot session."""
        cid = channel or self.general
        atts = []
        for name, mime, data in attachments:
            aid = self.next_id()
            key = f"{cid}/{aid}/{name}"
            self.files[key] = data
            atts.append({"id": str(aid), "filename": name, "size": len(data), "content_type": mime,
                         "url": f"{self.base_url}/attachments/{key}", "proxy_url": f"{self.base_url}/attachments/{key}"})
        ref = {"message_id": reply_to, "channel_id": str(cid)} if reply_to else None
        msg = self._make_message(cid, user, content, reference=ref, attachments=atts)
        await self._dispatch_message("MESSAGE_CREATE", cid, msg)
        return msg

    async def _dispatch_message(self, event: str, channel_id: int, msg: dict[str, Any]) -> None:
        data = dict(self._visible(msg, channel_id))
        if channel_id in self.channels:
            data["guild_id"] = str(self.guild_id)
            member = self._member(msg["author"])
            member.pop("user")
            data["member"] = member
        await self.dispatch(event, data)

    async def slash_command(self, user: dict[str, Any], name: str, text: str = "", *,
                            channel: int | None = None) -> dict[str, Any]:
        """A member runs ``/name text``; dispatched as INTERACTION_CREATE."""
        cid = channel or self.general
        token = f"itoken-{self.next_id()}"
        cmd = next((c for c in self.commands if c["name"] == name), {"id": str(self.next_id())})
        options = [{"name": "text", "type": 3, "value": text}] if text else []
        member = self._member(user) | {"permissions": "2147483647"}
        data = {"id": str(self.next_id()), "application_id": str(self.application_id), "type": 2,
                "data": {"id": cmd["id"], "name": name, "type": 1, "options": options},
                "guild_id": str(self.guild_id), "channel_id": str(cid),
                "channel": {k: v for k, v in self.channels[cid].items()}, "member": member,
                "token": token, "version": 1, "app_permissions": "2147483647", "locale": "en-US",
                "guild_locale": "en-US", "entitlements": [], "attachment_size_limit": 10 * 1024 * 1024, "authorizing_integration_owners": {"0": str(
                    self.guild_id)}, "context": 0}
        self._interactions[token] = data
        await self.dispatch("INTERACTION_CREATE", data)
        return data

    def rate_limit_next(self, method: str, path_regex: str, retry_after: float = 0.2, times: int = 1) -> None:
        """The next ``times`` requests matching answer 429 with ``retry_after`` seconds."""
        self.rate_limits[(method, path_regex)] = [retry_after] * times

    def sent_by_bot(self, channel: int | None = None) -> list[dict[str, Any]]:
        cids = [channel] if channel else list(self.messages)
        return [m for c in cids for m in self.messages.get(c, []) if m["author"]["id"] == self.bot["id"]]

    async def wait_bot_messages(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until the bot has posted at least ``n`` messages (in any channel); returns them."""
        async def until() -> None:
            while len(self.sent_by_bot()) < n:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(until(), timeout)
        return self.sent_by_bot()

    def requests_to(self, method: str, path_regex: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_regex, r.path)]

    # ----------------------------------------------------------------- gateway

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        for sess in list(self._sessions.values()):
            if sess.ws is None or sess.ws.closed:
                continue
            await self._send_dispatch(sess, event, data)
        async with self._dispatched:
            self._dispatched.notify_all()

    async def until(self, predicate: Any, timeout: float = 20.0) -> None:
        """Wait until ``predicate()`` holds, checked after every change (messages posted, edited, deleted)."""
        async with self._dispatched:
            await asyncio.wait_for(self._dispatched.wait_for(predicate), timeout)

    async def _send_dispatch(self, sess: GatewaySession, event: str, data: dict[str, Any]) -> None:
        sess.seq += 1
        payload = {"op": 0, "t": event, "s": sess.seq, "d": data}
        sess.sent.append(payload)
        await self._send(sess, payload)

    async def _send(self, sess: GatewaySession, payload: dict[str, Any]) -> None:
        assert sess.ws is not None
        raw = json.dumps(payload).encode()
        if sess.compressor is not None:
            await sess.ws.send_bytes(sess.compressor.compress(raw) + sess.compressor.flush(zlib.Z_SYNC_FLUSH))
        else:
            await sess.ws.send_str(raw.decode())

    async def close_gateways(self, code: int = 4000) -> None:
        """Drop every gateway connection (as a network failure or a Discord-side restart would)."""
        for sess in list(self._sessions.values()):
            if sess.ws is not None and not sess.ws.closed:
                await sess.ws.close(code=code)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=True, heartbeat=None)
        await ws.prepare(request)
        sess = GatewaySession(session_id="", intents=0, ws=ws)
        if request.query.get("compress") == "zlib-stream":
            sess.compressor = zlib.compressobj()
        await self._send(sess, {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            op = msg.get("op")
            if op == 1:
                await self._send(sess, {"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                sess = await self._identify(sess, msg["d"])
            elif op == 6:
                sess = await self._resume(sess, msg["d"])
        if ws.close_code is not None:
            self.closed_codes.append(ws.close_code)
        return ws

    async def _identify(self, sess: GatewaySession, d: dict[str, Any]) -> GatewaySession:
        assert sess.ws is not None
        if d.get("token") != self.token or self.reject_identify:
            self.server_close_codes.append(4004)
            await sess.ws.close(code=4004, message=b"Authentication failed.")
            return sess
        intents = int(d.get("intents", 0))
        if intents & INTENT_MESSAGE_CONTENT and not self.message_content_enabled:
            self.server_close_codes.append(4014)
            await sess.ws.close(code=4014, message=b"Disallowed intent(s).")
            return sess
        sess.session_id = f"session-{next(self._session_ids)}"
        sess.intents = intents
        self._sessions[sess.session_id] = sess
        ready = {"v": 10, "user": self.bot | {"verified": True, "mfa_enabled": False, "flags": 0},
                 "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                 "session_id": sess.session_id, "resume_gateway_url": self.gateway_url,
                 "application": {"id": str(self.application_id), "flags": APP_FLAG_GATEWAY_MESSAGE_CONTENT},
                 "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
                 "geo_ordered_rtc_regions": [], "shard": [0, 1]}
        await self._send_dispatch(sess, "READY", ready)
        await self._send_dispatch(sess, "GUILD_CREATE", self.guild_payload())
        self.identified.set()
        return sess

    async def _resume(self, sess: GatewaySession, d: dict[str, Any]) -> GatewaySession:
        assert sess.ws is not None
        old = self._sessions.get(d.get("session_id", ""))
        if old is None or d.get("token") != self.token:
            await self._send(sess, {"op": 9, "d": False, "s": None, "t": None})
            return sess
        old.ws, old.compressor = sess.ws, sess.compressor
        for payload in [p for p in old.sent if p["s"] > int(d.get("seq") or 0)]:
            await self._send(old, payload)
        await self._send_dispatch(old, "RESUMED", {})
        return old

    # ----------------------------------------------------------------- REST

    def _json(self, data: Any, status: int = 200) -> web.Response:
        headers = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "49", "X-RateLimit-Reset-After": "1.0",
                   "X-RateLimit-Reset": f"{time.time() + 1:.3f}", "X-RateLimit-Bucket": "fakebucket"}
        if status == 204:
            return web.Response(status=204, headers=headers)
        return _json_response(data, status=status, headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path.startswith("/gateway") and not path.startswith("/api"):
            return await handler(request)
        body: Any = None
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
            elif request.content_type.startswith("multipart/"):
                body = await self._read_multipart(request)
        self.requests.append(Recorded(request.method, path.removeprefix("/api/v10"), body,
                                      dict(request.query), dict(request.headers)))
        request[BODY] = body
        for (method, pattern), pending in self.rate_limits.items():
            if pending and method == request.method and re.fullmatch(pattern, path.removeprefix("/api/v10")):
                retry_after = pending.pop(0)
                return _json_response(
                    {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
                    status=429, headers={"Retry-After": str(retry_after), "Via": "1.1 google",
                                         "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                                         "X-RateLimit-Reset-After": str(retry_after),
                                         "X-RateLimit-Bucket": "fakebucket", "X-RateLimit-Scope": "user"})
        public = "/webhooks/" in path or "/interactions/" in path or path.startswith("/attachments/")
        if not public and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return await handler(request)

    async def _read_multipart(self, request: web.Request) -> dict[str, Any]:
        reader = await request.multipart()
        payload: dict[str, Any] = {}
        files = []
        async for part in reader:
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            else:
                files.append({"name": part.filename, "data": bytes(await part.read())})
        payload["_files"] = files
        return payload

    async def _me(self, _: web.Request) -> web.Response:
        return self._json(self.bot | {"verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, _: web.Request) -> web.Response:
        return self._json({"id": str(self.application_id), "name": "paibot", "icon": None, "description": "",
                           "bot_public": True, "bot_require_code_grant": False, "owner": self._user(1, "owner"),
                           "verify_key": "00" * 32, "team": None, "summary": "",
                           "flags": APP_FLAG_GATEWAY_MESSAGE_CONTENT if self.message_content_enabled else 0})

    async def _gateway_info(self, _: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    def _channel_of(self, request: web.Request) -> int:
        cid = int(request.match_info["cid"])
        if cid not in self.messages:
            raise web.HTTPNotFound(body=json.dumps({"message": "Unknown Channel", "code": 10003}).encode(),
                                   headers={"Content-Type": "application/json"})
        return cid

    async def _create_message(self, request: web.Request) -> web.Response:
        cid = self._channel_of(request)
        body = request[BODY] or {}
        content = body.get("content") or ""
        if len(content) > 2000:
            return self._json({"code": 50035, "message": "Invalid Form Body", "errors": {"content": {
                "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}},
                status=400)
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce") and (cid, str(nonce)) in self._nonces:
            return self._json(self._nonces[(cid, str(nonce))])
        atts = [{"id": str(self.next_id()), "filename": f["name"], "size": len(f["data"]),
                 "url": f"{self.base_url}/attachments/x", "proxy_url": f"{self.base_url}/attachments/x"}
                for f in body.get("_files", [])]
        msg = self._make_message(cid, self.bot, content, allowed=body.get("allowed_mentions"),
                                 reference=body.get("message_reference"), attachments=atts,
                                 nonce=None if nonce is None else str(nonce), flags=int(body.get("flags", 0)),
                                 poll=body.get("poll"))
        if nonce is not None:
            self._nonces[(cid, str(nonce))] = msg
        await self._dispatch_message("MESSAGE_CREATE", cid, msg)
        return self._json(msg)

    async def _edit_message(self, request: web.Request) -> web.Response:
        cid = self._channel_of(request)
        msg = self._find(cid, int(request.match_info["mid"]))
        if msg is None:
            return self._json({"message": "Unknown Message", "code": 10008}, status=404)
        body = request[BODY] or {}
        if "content" in body:
            if len(body["content"] or "") > 2000:
                return self._json({"code": 50035, "message": "Invalid Form Body"}, status=400)
            msg["content"] = body["content"]
            users, roles, everyone = self._resolve_mentions(msg["content"], body.get("allowed_mentions"), None)
            msg.update(mentions=users, mention_roles=roles, mention_everyone=everyone)
        if "flags" in body:
            msg["flags"] = int(body["flags"])
        msg["edited_timestamp"] = datetime.now(timezone.utc).isoformat()
        await self._dispatch_message("MESSAGE_UPDATE", cid, msg)
        return self._json(msg)

    async def _delete_message(self, request: web.Request) -> web.Response:
        cid = self._channel_of(request)
        msg = self._find(cid, int(request.match_info["mid"]))
        if msg is None:
            return self._json({"message": "Unknown Message", "code": 10008}, status=404)
        await self.delete(cid, msg["id"])
        return web.Response(status=204)

    async def delete(self, channel_id: int, message_id: str) -> None:
        """A message disappears from a channel (the bot or a moderator deleted it): MESSAGE_DELETE."""
        self.messages[channel_id] = [m for m in self.messages.get(channel_id, []) if m["id"] != message_id]
        data = {"id": message_id, "channel_id": str(channel_id)}
        if channel_id in self.channels:
            data["guild_id"] = str(self.guild_id)
        await self.dispatch("MESSAGE_DELETE", data)

    async def _get_message(self, request: web.Request) -> web.Response:
        cid = self._channel_of(request)
        msg = self._find(cid, int(request.match_info["mid"]))
        if msg is None:
            return self._json({"message": "Unknown Message", "code": 10008}, status=404)
        return self._json(self._visible(msg, cid))

    async def _history(self, request: web.Request) -> web.Response:
        cid = self._channel_of(request)
        q = request.query
        limit = max(1, min(100, int(q.get("limit", 50))))
        msgs = self.messages[cid]
        if "after" in q:
            picked = [m for m in msgs if int(m["id"]) > int(q["after"])][:limit]
        else:
            before = int(q["before"]) if "before" in q else None
            eligible = [m for m in msgs if before is None or int(m["id"]) < before]
            picked = eligible[-limit:]
        return self._json([self._visible(m, cid) for m in reversed(picked)])  # newest first, like Discord

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel_of(request)
        return self._json(None, status=204)

    async def _put_commands(self, request: web.Request) -> web.Response:
        self.commands = [c | {"id": str(self.next_id()), "application_id": str(self.application_id),
                              "version": str(self.next_id()), "default_member_permissions": None}
                         for c in request[BODY] or []]
        return self._json(self.commands)

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self._interactions:
            return self._json({"message": "Unknown interaction", "code": 10062}, status=404)
        self.interaction_callbacks.append({"id": request.match_info["iid"], "token": token,
                                           "body": request[BODY]})
        return self._json(None, status=204)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        inter = self._interactions.get(token)
        if inter is None:
            return self._json({"message": "Unknown Webhook", "code": 10015}, status=404)
        body = request[BODY] or {}
        cid = int(inter["channel_id"])
        content = body.get("content") or ""
        if len(content) > 2000:
            return self._json({"code": 50035, "message": "Invalid Form Body"}, status=400)
        mid = request.match_info.get("mid")
        if mid is not None and mid != "@original":
            msg = self._find(cid, int(mid))
            if msg is None:
                return self._json({"message": "Unknown Message", "code": 10008}, status=404)
            msg["content"] = content
            await self._dispatch_message("MESSAGE_UPDATE", cid, msg)
            return self._json(msg)
        if mid == "@original" and inter.get("_original"):
            msg = self._find(cid, int(inter["_original"]))
            assert msg is not None
            msg["content"] = content
            await self._dispatch_message("MESSAGE_UPDATE", cid, msg)
            return self._json(msg)
        meta = {"id": inter["id"], "type": 2, "user": inter["member"]["user"], "name": inter["data"]["name"],
                "authorizing_integration_owners": {}}
        msg = self._make_message(cid, self.bot, content, allowed=body.get("allowed_mentions"),
                                 flags=int(body.get("flags", 0)), interaction=meta)
        if mid == "@original":
            inter["_original"] = msg["id"]
        await self._dispatch_message("MESSAGE_CREATE", cid, msg)
        return self._json(msg)

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if key not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[key], content_type="application/octet-stream")

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self, port: int = 0) -> None:
        """Listen on ``port`` (0: any free one; a fixed one to come back where a stopped fake was)."""
        app = web.Application(middlewares=[self._middleware])
        api = "/api/v10"
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get(f"{api}/users/@me", self._me)
        r.add_get(f"{api}/oauth2/applications/@me", self._application)
        r.add_get(f"{api}/gateway", self._gateway_info)
        r.add_get(f"{api}/gateway/bot", self._gateway_info)
        r.add_post(f"{api}/channels/{{cid}}/messages", self._create_message)
        r.add_get(f"{api}/channels/{{cid}}/messages", self._history)
        r.add_get(f"{api}/channels/{{cid}}/messages/{{mid}}", self._get_message)
        r.add_patch(f"{api}/channels/{{cid}}/messages/{{mid}}", self._edit_message)
        r.add_delete(f"{api}/channels/{{cid}}/messages/{{mid}}", self._delete_message)
        r.add_post(f"{api}/channels/{{cid}}/typing", self._typing)
        r.add_put(f"{api}/applications/{{app}}/commands", self._put_commands)
        r.add_post(f"{api}/interactions/{{iid}}/{{token}}/callback", self._interaction_callback)
        r.add_post(f"{api}/webhooks/{{app}}/{{token}}", self._webhook_message)
        r.add_patch(f"{api}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._webhook_message)
        r.add_get("/attachments/{key:.+}", self._attachment)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.close_gateways(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py only decodes JSON when the content type is that string.
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


class RecordingSink(RecordingInbox):
    """An in-memory ``IntakeSink`` with the inbox's semantics: deduplication by ``event_id`` and the cursor
    committed together with the events. ``fail_next`` makes the next submit raise (a failed commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next: Exception | None = None
        self._changed = asyncio.Condition()

    async def submit(self, events: Any, *, cursor_key: str | None = None, cursor: str | None = None) -> int:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        new = self.commit(events, cursor_key, cursor)
        async with self._changed:
            self._changed.notify_all()
        return new

    def messages(self) -> list[Any]:
        return self.in_order()

    async def wait_until(self, predicate: Any, timeout: float = 15.0) -> None:
        async def loop() -> None:
            # Polls as well as waking on submits: some predicates look at adapter state set after a submit.
            while not predicate():
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), 0.05)
                    except asyncio.TimeoutError:
                        pass

        await asyncio.wait_for(loop(), timeout)
