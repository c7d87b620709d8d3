"""The local web group ("pai"): a small group chat served by paibot itself, needing no token or account.

The web group is its own platform. It keeps groups and messages in ``<data_dir>/web.db`` (see
``adapters.web_store``), serves a single page and a JSON API (``adapters.web_http``) and pushes live
updates over WebSockets (``adapters.web_live``). Towards the core it is an ordinary ``ChatAdapter``:

* A person's message is stored (pending), committed to the core's inbox with ``sink.submit`` (event id
  ``web:<group>:<message id>``), then made visible; only then does the poster get its 200. If the inbox
  refuses, the message is discarded and the poster gets a 503; after a crash, pending messages are handed
  to the inbox again at start-up (the inbox ignores ones it already has).
* ``send`` stores the bot's message (idempotent on ``Outgoing.idempotency_key``), pushes it live and
  returns a ``SentRef`` whose url is ``<public_url or http://host:port>/g/<group>#m<id>``.
* ``mentions_me`` is set when the text holds ``@<bot name>``; there are no direct messages here.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.web_http import LOOPBACK_HOSTS, ApiError, WebHttp
from adapters.web_live import LiveHub
from adapters.web_store import StoredGroup, StoredMessage, WebStore
from bot.config import Settings
from bot.errors import AdapterConfigError, DeliveryError
from bot.events import ChatRef, Message, Outgoing, PersonRef, ReplyRef, SentRef
from bot.ports import AdapterEnv, Capabilities, IntakeSink

log = logging.getLogger("paibot.web")

PLATFORM = "web"
BOT_USER_ID = "bot"
MAX_TEXT_LENGTH = 8000
_QUOTE_CHARS = 300


class WebAdapter:
    """The web group as a ``ChatAdapter`` (and the ``GroupService`` behind its HTTP API)."""

    name = PLATFORM
    platform = PLATFORM

    def __init__(
        self,
        *,
        bot_name: str,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8765,
        access_token: str = "",
        public_url: str = "",
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        check_exposure(host, access_token)
        self.bot_name = bot_name
        self.max_text_length = max_text_length
        self.capabilities = Capabilities(
            max_text_length=max_text_length, edit=True, typing=True, links=True, idempotent_sends=True
        )
        self.hub = LiveHub()
        self._db_path = Path(data_dir) / "web.db"
        self._host = host
        self._port = port
        self._access_token = access_token
        self._public_url = public_url.rstrip("/")
        self._mention = re.compile(rf"(?<![\w@])@{re.escape(bot_name)}(?![\w])", re.IGNORECASE)
        self._store: WebStore | None = None
        self._sink: IntakeSink | None = None
        self._runner: web.AppRunner | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._bound_port: int | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """Where people reach the page (``public_url`` if configured, else the bound address)."""
        return self._public_url or self.local_url

    @property
    def local_url(self) -> str:
        """The address the server listens on (with the real port once started, also for ``port: 0``)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port or self._port}"

    async def start(self, sink: IntakeSink) -> None:
        """Open the store, re-deliver messages a crash left pending, then listen."""
        if self._runner is not None:
            return
        self._sink = sink
        self._store = await asyncio.to_thread(WebStore, self._db_path)
        await self._redeliver_pending()
        allowed = frozenset({*LOOPBACK_HOSTS, self._host.lower()})
        if self._public_url:
            from urllib.parse import urlsplit

            allowed |= {(urlsplit(self._public_url).hostname or "").lower()}
        app = WebHttp(
            self, access_token=self._access_token, allowed_hosts=allowed, public_url=self._public_url
        ).build()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise AdapterConfigError(
                f"the web group cannot listen on {self._host}:{self._port} ({exc.strerror or exc}); "
                "is another paibot running? Change adapters.web.port"
            ) from exc
        self._runner = runner
        self._bound_port = _bound_port(runner, self._port)
        log.info("web group listening on %s", self.base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await self.hub.close_all()
            await runner.cleanup()
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.close)
        self._sink = None

    async def _redeliver_pending(self) -> None:
        store = self._require_store()
        pending = await asyncio.to_thread(store.pending)
        for msg in pending:
            group = await asyncio.to_thread(store.group, msg.group)
            if group is None:
                continue
            target = await asyncio.to_thread(store.message, msg.reply_to) if msg.reply_to else None
            await self._require_sink().submit([self.to_event(group, msg, target)])
            await asyncio.to_thread(store.mark_delivered, msg.id)
        if pending:
            log.info("handed %d web message(s) left pending by a crash to the inbox", len(pending))

    def _require_store(self) -> WebStore:
        if self._store is None:
            raise DeliveryError("the web group is not running")
        return self._store

    def _require_sink(self) -> IntakeSink:
        if self._sink is None:
            raise DeliveryError("the web group is not running")
        return self._sink

    def _lock(self, group: str) -> asyncio.Lock:
        # One writer per group at a time: ids then become visible in order, so after=<id> never skips one.
        return self._locks.setdefault(group, asyncio.Lock())

    # ----------------------------------------------------------------- the core's side (ChatAdapter)

    async def send(self, out: Outgoing) -> SentRef:
        store = self._require_store()
        group = await asyncio.to_thread(store.group, out.chat.chat_id)
        if group is None:
            raise DeliveryError(f"there is no web group {out.chat.chat_id!r}")
        reply_to = int(out.reply_to) if out.reply_to and out.reply_to.isdigit() else None
        if out.files or out.poll:
            log.warning("the web group shows text only; dropped %d file(s)%s", len(out.files),
                        " and a poll" if out.poll else "")
        parts = split_text(out.text or " ", self.max_text_length)
        stored: list[StoredMessage] = []
        fresh: list[StoredMessage] = []
        async with self._lock(group.number):
            if reply_to is not None:
                target = await asyncio.to_thread(store.message, reply_to)
                reply_to = reply_to if target and target.group == group.number else None
            for i, part in enumerate(parts):
                key = out.idempotency_key and (out.idempotency_key if i == 0 else f"{out.idempotency_key}#{i}")
                msg, created = await asyncio.to_thread(
                    store.add_message, group.number, BOT_USER_ID, self.bot_name, part,
                    is_bot=True, reply_to=reply_to if i == 0 else None, idem_key=key or None,
                )
                stored.append(msg)
                if created:
                    fresh.append(msg)
        for msg in fresh:  # outside the lock: a slow page must not hold up the group's next message
            await self.hub.push(group.number, {"type": "message", "message": await self._render(msg)})
        first = stored[0]
        return SentRef(
            chat=out.chat,
            message_id=str(first.id),
            url=self.message_url(group.number, first.id),
            part_ids=tuple(str(m.id) for m in stored),
            sent_at=first.sent_at,
        )

    async def edit(self, ref: SentRef, text: str) -> None:
        store = self._require_store()
        if not ref.message_id.isdigit():
            raise DeliveryError(f"not a web message id: {ref.message_id!r}")
        msg = await asyncio.to_thread(store.edit_message, int(ref.message_id), text[: self.max_text_length])
        if msg is None:
            raise DeliveryError(f"the bot has no web message {ref.message_id}")
        await self.hub.push(msg.group, {"type": "edit", "message": await self._render(msg)})

    async def typing(self, chat: ChatRef) -> None:
        try:
            await self.hub.push(chat.chat_id, {"type": "typing", "name": self.bot_name, "is_bot": True})
        except Exception as exc:  # best effort by contract: a typing indicator never fails a reply
            log.debug("typing push failed: %s", exc)

    # ----------------------------------------------------------------- the page's side (GroupService)

    async def create_group(self, name: str) -> StoredGroup:
        group = await asyncio.to_thread(self._require_store().create_group, name)
        log.info("web group %s created", group.number)
        return group

    async def find_group(self, number: str) -> StoredGroup | None:
        return await asyncio.to_thread(self._require_store().group, number)

    async def find_invite(self, invite: str) -> StoredGroup | None:
        return await asyncio.to_thread(self._require_store().group_by_invite, invite)

    def group_json(self, group: StoredGroup) -> dict[str, Any]:
        return {
            "id": group.number,
            "number": group.number,
            "name": group.name,
            "invite": group.invite,
            "invite_url": f"{self.base_url}/join/{group.invite}",
            "url": f"{self.base_url}/g/{group.number}",
            "key": f"{PLATFORM}:{group.number}",
            "created_at": group.created_at.isoformat(),
        }

    async def post_message(
        self, group: StoredGroup, author_id: str, author_name: str, text: str, reply_to: int | None,
        nonce: str | None,
    ) -> dict[str, Any]:
        """Store a person's message and commit it to the inbox; returns it once both are durable."""
        store = self._require_store()
        if author_id == BOT_USER_ID:
            raise ApiError(400, f"'author_id' {BOT_USER_ID!r} is reserved for the bot")
        async with self._lock(group.number):
            target = None
            if reply_to is not None:
                target = await asyncio.to_thread(store.message, reply_to)
                if target is None or target.group != group.number or not target.delivered:
                    raise ApiError(400, f"'reply_to': there is no message {reply_to} in this group")
            msg, created = await asyncio.to_thread(
                store.add_message, group.number, author_id, author_name, text,
                reply_to=reply_to, delivered=False, nonce=nonce,
            )
            if msg.delivered:  # a retry with the same nonce: already safe, nothing to do
                return await self._render(msg)
            await self._commit(group, msg, target)
        rendered = await self._render(msg)
        await self.hub.push(group.number, {"type": "message", "message": rendered})
        return rendered

    async def _commit(self, group: StoredGroup, msg: StoredMessage, target: StoredMessage | None) -> None:
        store = self._require_store()
        try:
            await self._require_sink().submit([self.to_event(group, msg, target)])
        except Exception as exc:
            # The inbox did not take it: the message never became visible, so withdrawing it is honest.
            log.error("the inbox refused web message %s of group %s: %s", msg.id, group.number, exc)
            await asyncio.to_thread(store.discard, msg.id)
            raise ApiError(503, "the bot could not store this message right now; please try again") from exc
        await asyncio.to_thread(store.mark_delivered, msg.id)

    async def list_messages(self, group: StoredGroup, after: int | None, limit: int) -> dict[str, Any]:
        msgs, more = await asyncio.to_thread(self._require_store().list_messages, group.number, after, limit)
        return {"messages": [await self._render(m) for m in msgs], "has_more": more}

    # ----------------------------------------------------------------- translation

    def message_url(self, group: str, message_id: int) -> str:
        return f"{self.base_url}/g/{group}#m{message_id}"

    def mentions_bot(self, text: str) -> bool:
        return bool(self._mention.search(text))

    def to_event(self, group: StoredGroup, msg: StoredMessage, target: StoredMessage | None) -> Message:
        """The core's view of a person's message."""
        reply = None
        if target is not None:
            author = PersonRef(PLATFORM, target.author_id, target.author_name, is_bot=target.is_bot)
            reply = ReplyRef(str(target.id), target.text, author)
        return Message(
            event_id=f"{PLATFORM}:{group.number}:{msg.id}",
            id=str(msg.id),
            chat=ChatRef(PLATFORM, group.number, title=group.name),
            author=PersonRef(PLATFORM, msg.author_id, msg.author_name, is_bot=False),
            text=msg.text,
            sent_at=msg.sent_at,
            reply_to=reply,
            mentions_me=self.mentions_bot(msg.text),
            is_direct=False,
            url=self.message_url(group.number, msg.id),
        )

    async def _render(self, msg: StoredMessage) -> dict[str, Any]:
        reply = None
        if msg.reply_to is not None:
            target = await asyncio.to_thread(self._require_store().message, msg.reply_to)
            if target is not None:
                reply = {
                    "id": target.id,
                    "author": target.author_name,
                    "is_bot": target.is_bot,
                    "text": target.text[:_QUOTE_CHARS],
                }
        return {
            "id": msg.id,
            "group": msg.group,
            "author": msg.author_name,
            "author_name": msg.author_name,
            "author_id": msg.author_id,
            "is_bot": msg.is_bot,
            "text": msg.text,
            "sent_at": msg.sent_at.isoformat(),
            "reply_to": reply,
            "edited": msg.edited,
        }


# --------------------------------------------------------------------------- helpers and factory


def check_exposure(host: str, access_token: str) -> None:
    """Refuse to serve a non-loopback address without an access token."""
    if host.lower() not in LOOPBACK_HOSTS and not access_token:
        raise AdapterConfigError(
            f"the web group would listen on {host}, reachable from the network, without an access token; "
            "set adapters.web.access_token (e.g. ${PAIBOT_WEB_TOKEN}) or bind 127.0.0.1"
        )


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters, preferring paragraph and line breaks."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = max(rest.rfind("\n\n", 0, limit), rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
        if cut < limit // 2:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    parts.append(rest)
    return [p for p in parts if p] or [" "]


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return configured


def create_adapter(settings: Settings, env: AdapterEnv) -> WebAdapter:
    """The web group adapter from ``settings.adapters.web``."""
    cfg = settings.adapters.web
    return WebAdapter(
        bot_name=env.bot_name,
        data_dir=Path(env.data_dir),
        host=cfg.host,
        port=cfg.port,
        access_token=cfg.access_token,
        public_url=cfg.public_url,
    )
