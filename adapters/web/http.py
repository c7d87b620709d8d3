"""The web group's HTTP face: the single page, the JSON API and the live WebSocket (aiohttp).

Routes (``{group}`` is a group's address: 128 random bits, URL-safe; its 6-digit number is for display, and
for joining by number where the group allows it):

    GET  /  /g/{group}  /join/{invite}     the page (index.html); /g/{number} for a group joinable by number
    GET  /static/{app.js,app.css}          its script and style
    GET  /api/info                         {"bot_name", "max_text_length", "max_file_bytes", "max_files"}
    GET  /api/i18n?lang=zh-CN              {"locale", "messages": {English: translation}} for the page
    POST /api/members                      {"nickname"} -> 201 {"author_id", "nickname", "key"} (+ cookie)
    GET  /api/members/me                   {"author_id", "nickname"} of the member key sent (204: none)
    PATCH /api/members/me                  {"nickname"} -> the renamed member
    DELETE /api/members/me/keys            {"signed_out": n}: the member's other browsers must sign in again
    POST /api/groups                       {"name"} -> 201 group (a member creating it is its first admin)
    GET  /api/groups/{group}               group (+ "admin": whether the member key sent is the group's admin)
    PATCH /api/groups/{group}              {"join_by_number": bool, "new_links": true} (either or both) ->
                                           group; only its admins (403). new_links: a new address and
                                           invite, the old ones 404 and its open sockets are closed
    GET  /api/invites/{invite}             group
    GET  /api/numbers/{number}             {"address", "number", "name", "url"} of a group that lets people
                                           join by number; any other number: the same 404 as for none
    POST /api/groups/{group}/messages      {"text", "reply_to"?, "nonce"?, "author_id"?} -> message, as the
                                           member whose key is sent; or multipart/form-data: the same
                                           fields plus 1..max_files ``file`` parts (text may then be
                                           empty); 413 past the limits
    GET  /api/groups/{group}/messages      ?after=<id>&limit=<n> -> {"messages": [...], "has_more"}
    GET  /api/groups/{group}/ws            WebSocket: server pushes {"type": "message"|"edit"|"typing", ...}
    GET  /api/files/{id}                   a file's bytes (PNG/JPEG/GIF/WebP inline, the rest as downloads)
    GET  /signin/{token}                   a one-time sign-in link the bot sent privately: sets the member
                                           key cookie and opens the pai's group (410 when used or expired)
    GET  /api/media/{id}, /api/groups/{group}/watch...   watching together (``adapters.web.watch``)
    GET  /metrics                          the bot's Prometheus metrics (same access rules as the API)

Every API error is JSON ``{"error": "..."}`` with a 4xx/5xx status; nothing a client sends can crash the
server. Security: with an access token configured, every API call and socket needs it (``Authorization:
Bearer``, ``?token=`` or the cookie the page sets); without one (loopback only) the Host header must name a
loopback address (DNS rebinding) and a browser ``Origin`` must match the host (cross-site requests).

Identity: posting (messages, votes, commands) needs a member key: ``Authorization: Member <key>`` or the
HttpOnly cookie set when the page picks a nickname (``POST /api/members``). The message's author is the
key's member; naming another ``author_id`` is refused with 403, posting without a key with 401.
Files are served with ``nosniff``, a sandboxing CSP, and ``Content-Disposition: attachment`` unless they are
one of the four sniffed image types; HTML and SVG are never rendered by this origin.

What the API refuses and how it reads bodies is ``adapters.web.api``; what it needs of the adapter is
``adapters.web.service.GroupService``.

A member of another platform signed in by a one-time link (``adapters.web.signin``, ``/signin/{token}``) is
a member like the others: the link gives the browser a key (the same cookie) for the web id linked to her.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from adapters.web.config import LOOPBACK
from adapters.web.files import download_type, inline_type
from adapters.web.api import (
    MAX_BODY_BYTES, ApiError, chunks, clean_line, clean_text, content_disposition, parse_id, read_field, read_form,
    read_json,
)
from adapters.web.guard import BadJson, WebGuard, strict_json
from adapters.web.live import MOVED
from adapters.web.members import StoredMember
from adapters.web.quota import Reservation
from adapters.web.service import GroupService
from adapters.web.store import StoredGroup
from bot.i18n import N_, SOURCE_LOCALE, Catalogs, Text

if TYPE_CHECKING:
    from adapters.web.attachments import StagedFile

log = logging.getLogger("paibot.web")

FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
MAX_NAME_CHARS = 80
MAX_NICK_CHARS = 40
TOKEN_COOKIE = "paibot_token"
MEMBER_COOKIE = "paibot_member"
MEMBER_COOKIE_MAX_AGE = 400 * 86400  # browsers cap cookie lifetimes at 400 days
LOOPBACK_HOSTS = frozenset(LOOPBACK)
STATIC_DIR = Path(__file__).with_name("static")
_STATIC_TYPES = {
    "app.js": "text/javascript", "media.js": "text/javascript", "i18n.js": "text/javascript", "app.css": "text/css",
    "watch.js": "text/javascript", "watch.css": "text/css",
}
_ADDRESS = re.compile(r"^[A-Za-z0-9_-]{22,64}$")  # a group's address (adapters.web.store.new_address)
_NUMBER = re.compile(r"^[0-9]{6}$")


# A socket whose client keeps sending past its limit (a page sends a typing notice every few seconds) is
# closed after this many messages dropped in a row, so a flood costs the server a reconnect, not a frame read.
MAX_DROPPED_IN_A_ROW = 100
_HANG_UP_S = 0.05  # how long closing such a socket may take

# Refusals a person may read on the page (translated into the request's language).
_TOO_MANY_GROUPS = Text(N_("This address has created its share of groups for now; try again later."))
_TOO_MANY_MISSES = Text(N_("Too many addresses that lead to no group came from here; try again later."))
_TOO_FAST = Text(N_("You are posting too fast; wait a moment."))
_TOO_MANY_MEMBERS = Text(N_("This address has made its share of members for now; try again later."))
_NO_SUCH_NUMBER = Text(N_("No group with this number lets people join by number."))
_ADMINS_ONLY = Text(N_("Only the group's admins can change this."))
_NO_SUCH_GROUP = Text(N_("There is no group at this address."))
_NO_SUCH_INVITE = Text(N_("This invite link is not valid."))


# --------------------------------------------------------------------------- the application


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebHttp:
    """Builds the aiohttp application around a ``GroupService``."""

    def __init__(
        self, service: GroupService, *, access_token: str, allowed_hosts: frozenset[str], public_url: str = "",
        guard: WebGuard | None = None,
    ) -> None:
        self.service = service
        self.guard = guard or WebGuard(None, (service.bot_name,))
        self.access_token = access_token
        self.allowed_hosts = allowed_hosts
        # Behind a reverse proxy the page's origin is the public address, whatever Host the proxy forwards.
        self.public_origin = urlsplit(public_url).netloc.lower() if public_url else ""
        self.public_secure = public_url.lower().startswith("https://")
        self._static = {name: (STATIC_DIR / name).read_bytes() for name in ("index.html", *_STATIC_TYPES)}
        self._catalogs = Catalogs()

    def build(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self._errors, self._guard, self._headers]
        )
        r = app.router
        for path in ("/", "/g/{group}", "/join/{invite}"):
            r.add_get(path, self.page)
        r.add_get("/static/{name}", self.static)
        r.add_get("/api/info", self.info)
        r.add_get("/api/i18n", self.translations)
        r.add_post("/api/members", self.create_member)
        r.add_get("/api/members/me", self.get_me)
        r.add_patch("/api/members/me", self.rename_me)
        r.add_delete("/api/members/me/keys", self.sign_out_others)
        r.add_post("/api/groups", self.create_group)
        r.add_get("/api/groups/{group}", self.get_group)
        r.add_patch("/api/groups/{group}", self.change_group)
        r.add_get("/api/invites/{invite}", self.get_invite)
        r.add_get("/api/numbers/{number}", self.get_number)
        r.add_post("/api/groups/{group}/messages", self.post_message)
        r.add_get("/api/groups/{group}/messages", self.get_messages)
        r.add_get("/api/groups/{group}/ws", self.socket)
        r.add_get("/api/files/{file_id}", self.get_file)
        r.add_get("/signin/{token}", self.sign_in)
        self.service.watch.add_routes(r, self.service, self._group)
        if getattr(self.service, "metrics", None) is not None:
            r.add_get("/metrics", self.metrics)
        return app

    # ----------------------------------------------------------------- middlewares

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return web.json_response(exc.body(self._say(request, exc.message)), status=exc.status)
        except web.HTTPException as exc:
            if not request.path.startswith("/api/") or exc.status < 400:
                raise
            return web.json_response({"error": exc.reason}, status=exc.status)
        except (ConnectionError, EOFError) as exc:  # the client went away mid-request: nothing to answer
            log.info("%s %s: the client went away (%s)", request.method, request.path, type(exc).__name__)
            return web.json_response({"error": "the request was cut short"}, status=400)
        except Exception:  # never a plain-text 500: log it and answer in JSON like every other error
            if not request.path.startswith("/api/"):
                raise
            log.exception("%s %s failed", request.method, request.path)
            return web.json_response({"error": "internal error"}, status=500)

    def _say(self, request: web.Request, message: str | Text) -> str:
        if not isinstance(message, Text):
            return message
        wanted = request.query.get("lang") or request.headers.get("Accept-Language", "").split(",")[0]
        locale = self._catalogs.resolve(wanted.split(";")[0][:35]) or SOURCE_LOCALE
        return self._catalogs.translator(locale).render(message)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (urlsplit(f"//{request.host}").hostname or "").lower()
        if not self.access_token and host not in self.allowed_hosts:
            raise ApiError(403, f"this server answers only for {', '.join(sorted(self.allowed_hosts))}")
        origin = request.headers.get("Origin")
        trusted = {request.host.lower(), self.public_origin} - {""}
        if origin and urlsplit(origin).netloc.lower() not in trusted:
            raise ApiError(403, "cross-site requests are not allowed")
        guarded = request.path.startswith("/api/") or request.path == "/metrics"
        if guarded and self.access_token and not self._authorised(request):
            raise ApiError(401, "an access token is required (Authorization: Bearer <token> or ?token=)",
                           need="token")
        if request.path.startswith(("/g/", "/join/")) or request.path == "/":
            token = request.query.get("token")
            if token and self.access_token and hmac.compare_digest(token.encode(), self.access_token.encode()):
                # Trade the token in the address bar for a cookie, then drop it from the URL.
                resp = web.Response(status=302, headers={"Location": request.path})
                resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
                return resp
        return await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        want = self.access_token.encode()
        auth = request.headers.get("Authorization", "")
        candidates = [
            auth[7:].strip() if auth.lower().startswith("bearer ") else "",
            request.query.get("token", ""),
            request.cookies.get(TOKEN_COOKIE, ""),
        ]
        return any(c and hmac.compare_digest(c.encode(), want) for c in candidates)

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        if not isinstance(resp, web.WebSocketResponse):
            resp.headers.setdefault(
                "Content-Security-Policy",
                f"default-src 'self'; connect-src 'self' ws://{request.host} wss://{request.host}; "
                "img-src 'self' data: blob:; media-src 'self' https: http: blob:; object-src 'none'; "
                "base-uri 'none'; frame-ancestors 'none'",
            )
            resp.headers.setdefault("X-Content-Type-Options", "nosniff")
            resp.headers.setdefault("Referrer-Policy", "no-referrer")
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # ----------------------------------------------------------------- page

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._static["index.html"], content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC_TYPES:
            raise web.HTTPNotFound()
        return web.Response(body=self._static[name], content_type=_STATIC_TYPES[name], charset="utf-8")

    # ----------------------------------------------------------------- API

    async def metrics(self, request: web.Request) -> web.Response:
        source = self.service.metrics
        assert source is not None
        return web.Response(body=await source.render(), headers={"Content-Type": source.content_type})

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"bot_name": self.service.bot_name, "max_text_length": self.service.max_text_length,
             **self.service.limits_json()}
        )  # fmt: skip

    async def translations(self, request: web.Request) -> web.Response:
        """The page's sentences in the language asked for (``?lang=zh-CN``, as the browser names it)."""
        locale = self._catalogs.resolve(request.query.get("lang", "")[:35]) or SOURCE_LOCALE
        messages = self._catalogs.messages(locale, suffixes=(".js", ".html"))
        return web.json_response({"locale": locale.replace("_", "-"), "messages": messages})

    # ----------------------------------------------------------------- members

    @staticmethod
    def _key(request: web.Request) -> str:
        """The member key the request carries (``Authorization: Member <key>``, else the cookie); "" for none."""
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("member ") else ""
        key = key or request.cookies.get(MEMBER_COOKIE, "")
        return key if len(key) <= 200 else ""

    async def _member(self, request: web.Request) -> StoredMember | None:
        """The member whose key the request carries."""
        key = self._key(request)
        return await self.service.member_by_key(key) if key else None

    async def _required_member(self, request: web.Request) -> StoredMember:
        member = await self._member(request)
        if member is None:
            raise ApiError(401, "a member key is required: get one with POST /api/members {\"nickname\": ...} "
                                "and send it as 'Authorization: Member <key>'", need="member")
        return member

    def _nickname(self, data: dict[str, Any]) -> str:
        nickname = clean_line(data.get("nickname"), "nickname", MAX_NICK_CHARS)
        problem = self.guard.nickname_problem(nickname)  # the bot's names and what looks like them
        if problem:
            raise ApiError(400, problem)
        return nickname

    async def create_member(self, request: web.Request) -> web.Response:
        self._limit(request, "post", _TOO_FAST)  # members cost a row each: no faster than posts
        self._limit(request, "new_member", _TOO_MANY_MEMBERS)  # and only so many an hour from one address
        nickname = self._nickname(await read_json(request))
        member, key = await self.service.add_member(nickname)
        body = {"author_id": member.author_id, "nickname": member.nickname, "key": key}
        resp = web.json_response(body, status=201)
        resp.set_cookie(MEMBER_COOKIE, key, httponly=True, samesite="Strict", path="/",
                        max_age=MEMBER_COOKIE_MAX_AGE, secure=self.public_secure)  # fmt: skip
        return resp

    async def sign_in(self, request: web.Request) -> web.Response:
        signed = await self.service.redeem_sign_in(request.match_info["token"])
        if signed is None:
            lang = request.headers.get("Accept-Language", "").split(",")[0].split(";")[0].strip()[:35]
            t = self._catalogs.translator(self._catalogs.resolve(lang) or SOURCE_LOCALE)
            text = t._("This sign-in link was used already or has expired. Ask me for a new one with /signin.")
            return web.Response(status=410, text=text, content_type="text/plain", charset="utf-8")
        resp = web.Response(status=303, headers={"Location": f"/g/{signed.group}" if signed.group else "/"})
        # Lax, not Strict: the link is opened from another app, and the page it leads to must be signed in.
        resp.set_cookie(MEMBER_COOKIE, signed.key, httponly=True, samesite="Lax", path="/",
                        max_age=MEMBER_COOKIE_MAX_AGE, secure=self.public_secure)  # fmt: skip
        return resp

    async def get_me(self, request: web.Request) -> web.Response:
        """The member of the key sent; 204 when there is none (not an error: the page has not picked a
        nickname yet)."""
        member = await self._member(request)
        if member is None:
            return web.Response(status=204)
        return web.json_response({"author_id": member.author_id, "nickname": member.nickname})

    async def sign_out_others(self, request: web.Request) -> web.Response:
        """Every other browser signed in as this member must sign in again; this one stays signed in."""
        member = await self._required_member(request)
        gone = await self.service.sign_out_others(member, self._key(request))
        return web.json_response({"signed_out": gone})

    async def rename_me(self, request: web.Request) -> web.Response:
        member = await self._required_member(request)
        renamed = await self.service.rename_member(member, self._nickname(await read_json(request)))
        return web.json_response({"author_id": renamed.author_id, "nickname": renamed.nickname})

    # ----------------------------------------------------------------- groups and messages

    async def create_group(self, request: web.Request) -> web.Response:
        self._limit(request, "new_group", _TOO_MANY_GROUPS)
        data = await read_json(request)
        name = clean_line(data.get("name"), "name", MAX_NAME_CHARS)
        creator = await self._member(request)
        group = await self.service.create_group(name, creator)
        return web.json_response({**self.service.group_json(group), "admin": creator is not None}, status=201)

    async def _group_view(self, request: web.Request, group: StoredGroup) -> web.Response:
        """A group as its page needs it, with whether the request's member is one of its admins."""
        admin = await self.service.is_group_admin(group, await self._member(request))
        return web.json_response({**self.service.group_json(group), "admin": admin})

    async def _group(self, request: web.Request) -> StoredGroup:
        """The group whose address the path names; a 404 (a miss, counted) for anything else, numbers too."""
        address = request.match_info["group"]
        find = partial(self.service.find_group, address) if _ADDRESS.match(address) else None
        return await self._look_up(request, find, _NO_SUCH_GROUP)

    async def _look_up(
        self, request: web.Request, find: Callable[[], Awaitable[StoredGroup | None]] | None, missing: Text
    ) -> StoredGroup:
        """The group ``find`` finds (None: a malformed key, nothing to look up), once the client is known not
        to have used up its lookups of groups that do not exist (else a 429, whether or not the group exists:
        probing learns nothing); a 404 saying ``missing`` for no group, counted as one of those misses."""
        client, limits = self._client(request), self.guard.limits
        if limits is not None and not limits.may_look_up(client):
            raise ApiError(429, _TOO_MANY_MISSES)
        group = await find() if find is not None else None
        if group is None:
            if limits is not None:
                limits.missed(client)
            raise ApiError(404, missing)
        return group

    async def get_group(self, request: web.Request) -> web.Response:
        return await self._group_view(request, await self._group(request))

    async def change_group(self, request: web.Request) -> web.Response:
        """A group's admins decide whether people may join it by its number, and give it new links (a new
        address and invite) when one went where it should not."""
        group = await self._group(request)
        member = await self._required_member(request)
        data = await read_json(request)
        allowed, renew = data.get("join_by_number"), data.get("new_links")
        well_formed = (
            bool(data) and set(data) <= {"join_by_number", "new_links"}
            and ("join_by_number" not in data or isinstance(allowed, bool))
            and ("new_links" not in data or renew is True)
        )  # fmt: skip
        if not well_formed:
            raise ApiError(400, "send {\"join_by_number\": true|false} and/or {\"new_links\": true}")
        if not await self.service.is_group_admin(group, member):
            raise ApiError(403, _ADMINS_ONLY)
        if isinstance(allowed, bool):
            group = await self.service.set_join_by_number(group, allowed)
        if renew:
            group = await self.service.new_links(group)
        return web.json_response({**self.service.group_json(group), "admin": True})

    async def get_number(self, request: web.Request) -> web.Response:
        """Join by number: only a group that allows it is found. Any other number (none, or a group that
        does not allow it) gets the same 404 and counts as a miss, so numbers tell nothing."""
        number = request.match_info["number"]
        find = partial(self.service.find_by_number, number) if _NUMBER.match(number) else None
        group = await self._look_up(request, find, _NO_SUCH_NUMBER)
        return web.json_response(self.service.number_json(group))

    async def get_invite(self, request: web.Request) -> web.Response:
        find = partial(self.service.find_invite, request.match_info["invite"][:64])
        return await self._group_view(request, await self._look_up(request, find, _NO_SUCH_INVITE))

    async def post_message(self, request: web.Request) -> web.Response:
        group = await self._group(request)
        self._limit(request, "post", _TOO_FAST)  # before reading the body
        member = await self._required_member(request)
        self.service.check_served(group)
        space = None
        if request.content_type == "multipart/form-data":
            data, uploads, space = await self._read_upload(request, group)
        elif request.content_type == "application/x-www-form-urlencoded":  # a form without files
            data, uploads = await read_form(request), []
        else:
            data, uploads = await read_json(request), []
        try:
            return await self._post(group, member, data, uploads, space)
        except BaseException:
            if space is not None:
                space.release()
            await self.service.drop_uploads(uploads)
            raise

    async def _post(
        self, group: StoredGroup, member: StoredMember, data: dict[str, Any], uploads: list[StagedFile],
        space: Reservation | None = None,
    ) -> web.Response:
        claimed = data.get("author_id")
        if claimed not in (None, "", member.author_id):
            raise ApiError(403, "this member key belongs to another author_id: nobody can post as someone else")
        text = clean_text(data.get("text"), self.service.max_text_length, allow_empty=bool(uploads))
        reply_to = None if data.get("reply_to") in (None, "") else parse_id(data["reply_to"], "reply_to")
        nonce = data.get("nonce")
        if nonce is not None and (not isinstance(nonce, str) or not 1 <= len(nonce) <= 64):
            raise ApiError(400, "'nonce' must be text of 1-64 characters")
        message = await self.service.post_message(group, member, text, reply_to, nonce, uploads, space)
        return web.json_response(message)

    async def _read_upload(
        self, request: web.Request, group: StoredGroup
    ) -> tuple[dict[str, Any], list[StagedFile], Reservation | None]:
        """The fields and staged files of a multipart message and the storage quota space they were counted
        in (what the request's length says, reserved before any byte is read); on any refusal nothing staged
        is kept and the space is released."""
        limits = self.service.limits_json()
        max_files, max_bytes = limits["max_files"], limits["max_file_bytes"]
        max_media = limits.get("max_media_bytes", max_bytes)
        # 4 KiB per file for its part headers; one of the files may be a video or audio file (its own limit).
        most = max_files * (max_bytes + 4096) + max(0, max_media - max_bytes) + MAX_BODY_BYTES
        if request.content_length is not None and request.content_length > most:
            raise ApiError(413, f"the upload is too large (at most {max_files} files of {max_bytes} bytes)")
        fields: dict[str, Any] = {}
        uploads: list[StagedFile] = []
        space = await self.service.reserve_space(group, request.content_length or 0)
        try:
            try:
                reader = await request.multipart()
            except (ValueError, AssertionError) as exc:
                raise ApiError(400, f"not a valid multipart body: {exc}") from exc
            async for part in reader:
                if not hasattr(part, "read_chunk"):
                    raise ApiError(400, "nested multipart bodies are not accepted")
                if part.name == "file":
                    if len(uploads) >= max_files:
                        raise ApiError(413, f"at most {max_files} files per message")
                    mime = part.headers.get("Content-Type")
                    # Browsers escape '"' and line breaks as %22/%0A, some clients every non-ASCII byte.
                    name = unquote(part.filename or "", errors="replace")
                    uploads.append(await self.service.stage_upload(group, name, mime, chunks(part), space))
                    if sum(u.file.kind in ("video", "audio") for u in uploads) > 1:
                        raise ApiError(413, "at most one video or audio file per message")
                elif part.name in ("author", "author_id", "text", "reply_to", "nonce"):
                    fields[part.name] = await read_field(part)
                else:
                    raise ApiError(400, f"unexpected form field {str(part.name)[:40]!r}")
        except BaseException:
            if space is not None:
                space.release()
            await self.service.drop_uploads(uploads)
            raise
        return fields, uploads, space

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        stored = await self.service.find_file(request.match_info["file_id"])
        if stored is None:
            raise ApiError(404, "there is no such file")
        path = self.service.file_path(stored)
        inline = inline_type(stored.kind, stored.mime)
        disposition = "inline" if inline else "attachment"
        headers = {
            "Content-Type": inline or download_type(stored.mime),
            "Content-Disposition": content_disposition(disposition, stored.name),
            "X-Content-Type-Options": "nosniff",
            # Even if a browser were talked into rendering the bytes, they run in an opaque sandbox.
            "Content-Security-Policy": FILE_CSP,
            "Cache-Control": "private, max-age=86400",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        if not path.is_file():
            log.error("file %s of group %s has no bytes on disk", stored.id, stored.group)
            raise ApiError(404, "the file's bytes are missing")
        return web.FileResponse(path, headers=headers)

    async def get_messages(self, request: web.Request) -> web.Response:
        group = await self._group(request)
        after = request.query.get("after")
        limit = request.query.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise ApiError(400, "'limit' must be a whole number from 1 to 500")
        after_id = None if after in (None, "") else parse_id(after, "after")
        return web.json_response(await self.service.list_messages(group, after_id, int(limit)))

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        # The limits come first: a refused (re)connection costs no lookup of a group or member.
        client, limits = self._client(request), self.guard.limits
        if limits is not None and not limits.open_socket(client):
            raise ApiError(429, Text(N_("Too many live connections from this address (at most {n} at once); "
                                        "try again in a minute."), n=limits.rules.sockets))
        try:
            hub = self.service.hub
            moves = hub.moves
            group = await self._group(request)
            member = await self._member(request)  # the page's cookie (or a key): who steers a player from here
            ws = web.WebSocketResponse(heartbeat=25, max_msg_size=4096)
            await ws.prepare(request)
            hub.join(group.number, ws)
            try:
                # an admin gave the group new links while this socket opened: its address no longer holds
                if hub.moves != moves and await self.service.find_group(group.address) is None:
                    await ws.send_json({"type": "moved"})
                    await ws.close(code=MOVED, message=b"group moved")
                    return ws
                await ws.send_json({"type": "hello", "group": group.number, "bot_name": self.service.bot_name})
                dropped = 0  # messages past the client's limit in a row
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        continue
                    if limits is None or limits.socket_message(client):
                        dropped = 0
                        await self._on_socket_text(group.number, ws, msg.data, member)
                    elif (dropped := dropped + 1) > MAX_DROPPED_IN_A_ROW:  # a flood, not a page: hang up
                        log.info("closed a web socket of group %s: its client sends too much", group.number)
                        await _hang_up(ws)
                        break
            finally:
                hub.leave(group.number, ws)
        finally:
            if limits is not None:
                limits.close_socket(client)
        return ws

    def _client(self, request: web.Request) -> str:
        return self.guard.client(request.remote, request.headers.get("X-Forwarded-For"))

    def _limit(self, request: web.Request, what: str, why: Text) -> None:
        """Raise a 429 when the client is past its limit for ``what`` (a ``ClientLimits`` method)."""
        limits = self.guard.limits
        if limits is not None and not getattr(limits, what)(self._client(request)):
            raise ApiError(429, why)

    async def _on_socket_text(
        self, group: str, ws: web.WebSocketResponse, raw: str, member: StoredMember | None
    ) -> None:
        """Clients may announce that a person is typing, and players talk to their watch session
        (``adapters.web.watch``, as the socket's member); anything else is ignored."""
        try:
            data = strict_json(raw.encode("utf-8", "surrogatepass"))
            if not isinstance(data, dict):
                return
            if await self.service.watch.on_socket(group, ws, data, member) or data.get("type") != "typing":
                return
        except BadJson:
            return
        if member is None:  # only members type, under their own nickname (never one the socket claims)
            return
        await self.service.hub.push(group, {"type": "typing", "name": member.nickname, "is_bot": False}, skip=ws)


async def _hang_up(ws: web.WebSocketResponse) -> None:
    """Close a flooding socket: send the close frame (1008), then stop at once instead of reading what the
    client goes on sending until it answers the close (aiohttp waits up to 10 s for that, reading every frame)."""
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(_HANG_UP_S):
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")

