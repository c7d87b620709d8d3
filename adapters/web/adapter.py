"""The local web group ("pai"): a small group chat served by paibot itself, needing no token or account.

The web group is its own platform. It keeps groups and messages in ``<data_dir>/web.db`` (see
``adapters.web.store``), serves a single page and a JSON API (``adapters.web.http``) and pushes live
updates over WebSockets (``adapters.web.live``). Towards the core it is an ordinary ``ChatAdapter``:

* A person's message is stored (pending), committed to the core's inbox with ``sink.submit`` (event id
  ``web:<group>:<message id>``), then made visible; only then does the poster get its 200. If the inbox
  refuses, the message is discarded and the poster gets a 503; after a crash, pending messages are handed
  to the inbox again at start-up (the inbox ignores ones it already has).
* Groups: the core knows a group by its 6-digit number (``ChatRef.chat_id``, the key ``web:<number>``); people
  reach it by its unguessable address (``/g/<address>``), its invite, or its number where the group allows
  that (``join_by_number``, set by its admins; off for new groups). See ``adapters.web.store``.
* ``send`` stores the bot's message (idempotent on ``Outgoing.idempotency_key``), pushes it live and
  returns a ``SentRef`` whose url is ``<public_url or http://host:port>/g/<address>#m<id>``.
* ``mentions_me`` is set when the text holds ``@<bot name>``; there are no direct messages here.
* Files: uploads (multipart) are made durable under ``<data_dir>/web_files`` before the message is
  committed (``adapters.web.attachments``); they reach the core as ``Message.attachments`` whose ``source``
  is the file id, which ``fetch_attachment`` reads back. The bot's ``Outgoing.files`` are stored the same
  way and shown with its message.
* Watching together: the adapter hosts synchronised players (``bot.ports.WatchHost``); ``adapters.web.watch``
  carries the players' commands to the core's session and its state back, and streams uploaded media with
  range requests. Video and audio uploads have their own size limit (``adapters.web.max_media_bytes``).
* Pais (``bot.ports.HostedRooms``): the core may open a group for a pai (``open_room``) and sign a member of
  another platform into it with a one-time link (``sign_in_link``, ``adapters.web.signin``): opening it makes
  the web id linked to her a web member and gives the browser its member key.
* Polls: ``Outgoing.poll`` is stored with the bot's message and drawn as buttons. A button posts an ordinary
  reply to the poll message (``vote <n>``): the core has no vote event, and counting replies is how the
  polls skill tallies everywhere, so the page and the skill can never disagree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.web.attachments import StagedFile, WebAttachments, attachment
from adapters.web.config import WebAdapterSettings
from adapters.web.files import WebFileError, valid_file_id
from adapters.web.forgetting import WebForgetting
from adapters.web.guard import ClientLimits, ClientRules, WebGuard
from adapters.web.api import ApiError
from adapters.web.http import LOOPBACK_HOSTS, WebHttp
from adapters.web.live import LiveHub
from adapters.web.render import message_json, poll_row
from adapters.web.members import StoredMember
from adapters.web.quota import QuotaExceeded, Reservation, StorageQuota
from adapters.web.signin import SignedIn
from adapters.web.store import NewFile, StoredFile, StoredGroup, StoredMessage, WebStore
from adapters.web.watch import WebWatch
from bot.errors import AdapterConfigError, DeliveryError
from bot.events import Attachment, ChatRef, Message, Outgoing, PersonRef, ReplyRef, SentRef
from bot.ports import AdapterEnv, Capabilities, Grant, IntakeSink, MetricsSource, WatchControl, WatchView

log = logging.getLogger("paibot.web")

PLATFORM = "web"
BOT_USER_ID = "bot"
MAX_TEXT_LENGTH = 8000
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
MAX_MEDIA_BYTES = 2 * 1024 * 1024 * 1024


class WebAdapter(WebForgetting):
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
        max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
        max_media_bytes: int = MAX_MEDIA_BYTES,
        metrics: MetricsSource | None = None,
        guard: WebGuard | None = None,
        quota_mb: tuple[int, int] = (0, 0),
    ) -> None:
        """``guard``: the per-client limits and the bot's names (``adapters.web.guard``; default: only the
        bot's own name is refused as a nickname); ``quota_mb``: storage per group and in all (0: none)."""
        check_exposure(host, access_token)
        self.metrics = metrics
        self.serves_metrics = metrics is not None  # GET /metrics, under the API's access rules
        self.bot_name = bot_name
        self.guard = guard or WebGuard(None, (bot_name,))
        self._quota_mb = quota_mb
        self._quota: StorageQuota | None = None
        self.max_text_length = max_text_length
        self.capabilities = Capabilities(
            max_text_length=max_text_length, edit=True, typing=True, links=True, idempotent_sends=True,
            files=True, polls=True,
        )
        self.hub = LiveHub()
        self.attachments = WebAttachments(
            Path(data_dir) / "web_files", max_attachment_bytes, max_media_bytes=max_media_bytes
        )
        self.watch = WebWatch(self.hub, PLATFORM)
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

    @property
    def metrics_url(self) -> str:
        return f"{self.local_url}/metrics" if self.metrics is not None else ""

    async def start(self, sink: IntakeSink) -> None:
        """Open the store, re-deliver messages a crash left pending, then listen."""
        if self._runner is not None:
            return
        self._sink = sink
        self._store = await asyncio.to_thread(WebStore, self._db_path)
        if any(self._quota_mb):
            group_mb, total_mb = self._quota_mb
            self._quota = StorageQuota(group_mb * 2**20, total_mb * 2**20, self._store.bytes_used)
        await self.attachments.sweep(self._store)
        await self._redeliver_pending()
        allowed = frozenset({*LOOPBACK_HOSTS, self._host.lower()})
        if self._public_url:
            from urllib.parse import urlsplit

            allowed |= {(urlsplit(self._public_url).hostname or "").lower()}
        app = WebHttp(
            self, access_token=self._access_token, allowed_hosts=allowed, public_url=self._public_url,
            guard=self.guard,
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
            files = (await asyncio.to_thread(store.files_of, [msg.id])).get(msg.id, [])
            await self._require_sink().submit([self.to_event(group, msg, target, files)])
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
        staged = await self._stage_outgoing(group.number, out)
        try:
            files = await self.attachments.commit(staged)
            stored, fresh = await self._store_reply(group, out, files)
        except WebFileError as exc:
            await self.attachments.drop(staged)
            raise DeliveryError(f"the web group could not store the bot's files: {exc}") from exc
        except BaseException:
            await self.attachments.drop(staged)
            raise
        if staged and stored[0] not in fresh:  # a resend of a reply already stored: its files are there
            await self.attachments.drop(staged)
        for msg in await self._render_many(fresh):  # outside the lock: a slow page must not hold up the group
            await self.hub.push(group.number, {"type": "message", "message": msg})
        first = stored[0]
        return SentRef(
            chat=out.chat,
            message_id=str(first.id),
            url=self.message_url(group, first.id),
            part_ids=tuple(str(m.id) for m in stored),
            sent_at=first.sent_at,
        )

    async def _store_reply(
        self, group: StoredGroup, out: Outgoing, files: Sequence[NewFile]
    ) -> tuple[list[StoredMessage], list[StoredMessage]]:
        """Store the parts of a bot message (files and poll on the first); returns (all parts, new ones)."""
        store = self._require_store()
        parts = split_text(out.text or " ", self.max_text_length)
        poll = poll_row(out, now=datetime.now(timezone.utc))
        reply_to = int(out.reply_to) if out.reply_to and out.reply_to.isdigit() else None
        stored: list[StoredMessage] = []
        fresh: list[StoredMessage] = []
        async with self._lock(group.number):
            if reply_to is not None:
                target = await asyncio.to_thread(store.message, reply_to)
                reply_to = reply_to if target and target.group == group.number else None
            for i, part in enumerate(parts):
                key = out.idempotency_key and (f"{out.idempotency_key}#{i}" if i else out.idempotency_key)
                msg, created = await asyncio.to_thread(
                    store.add_message, group.number, BOT_USER_ID, self.bot_name, part,
                    is_bot=True, reply_to=reply_to if i == 0 else None, idem_key=key or None,
                    files=files if i == 0 else (), poll=poll if i == 0 else None,
                )
                stored.append(msg)
                if created:
                    fresh.append(msg)
        return stored, fresh

    async def _stage_outgoing(self, group: str, out: Outgoing) -> list[StagedFile]:
        staged: list[StagedFile] = []
        try:
            for f in out.files[: self.attachments.max_files]:
                staged.append(await self.attachments.stage_bytes(group, f))
        except BaseException:
            await self.attachments.drop(staged)
            raise
        if len(out.files) > self.attachments.max_files:
            log.warning("the web group shows %d files per message; dropped %d", self.attachments.max_files,
                        len(out.files) - self.attachments.max_files)
        return staged

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        """The bytes of a file posted in a web group (``AttachmentFetcher``); ``DeliveryError`` for an
        unknown source or a file over ``max_bytes``."""
        stored = None
        if valid_file_id(att.source):
            # The core may fetch before mark_delivered has run: the inbox already holds the event by then.
            stored = await asyncio.to_thread(self._require_store().file, att.source, pending_too=True)
        if stored is None:
            raise DeliveryError(f"there is no web group file {att.source[:80]!r}")
        return await self.attachments.read(stored, max_bytes)

    async def attachment_path(self, att: Attachment) -> Path | None:
        """Where a posted file's bytes lie (``LocalAttachments``): media are read in place, never loaded."""
        stored = None
        if valid_file_id(att.source):
            stored = await asyncio.to_thread(self._require_store().file, att.source, pending_too=True)
        path = self.attachments.path(stored) if stored is not None else None
        return path if path is not None and path.is_file() else None

    # ----------------------------------------------------------------- watching together (WatchHost)

    def host_watch(self, control: WatchControl) -> None:
        self.watch.host_watch(control)

    async def show_watch(self, view: WatchView) -> None:
        await self.watch.show_watch(view)

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

    # ----------------------------------------------------------------- pais (HostedRooms)

    async def open_room(self, title: str) -> ChatRef:
        """A new web group for a pai (``bot.ports.HostedRooms``)."""
        group = await self.create_group(title[:80] or "pai")
        return ChatRef(PLATFORM, group.number, title=group.name)

    async def sign_in_link(self, room: ChatRef, member: PersonRef, ttl_s: float) -> str:
        """A one-time link that makes ``member`` (a web id) a web member, gives the browser its key and opens
        ``room``."""
        if self._store is None:
            raise DeliveryError("the web group is not running")
        token = await asyncio.to_thread(self._store.issue_sign_in, member.user_id, member.display_name[:40],
                                        room.chat_id, ttl_s)
        return f"{self.base_url}/signin/{token}"

    async def redeem_sign_in(self, token: str) -> SignedIn | None:
        """The member signed in, with ``group`` the address of the room to open (the token names its number)."""
        if self._store is None or not token or len(token) > 100:
            return None
        signed = await asyncio.to_thread(self._store.redeem_sign_in, token)
        if signed is None:
            return None
        room = await asyncio.to_thread(self._store.group, signed.group)
        return dataclasses.replace(signed, group=room.address if room is not None else "")

    # ----------------------------------------------------------------- the page's side (GroupService)

    async def create_group(self, name: str, creator: StoredMember | None = None) -> StoredGroup:
        """A new group; the member creating it (if the request carried a key) is its first admin."""
        store = self._require_store()
        group = await asyncio.to_thread(store.create_group, name)
        if creator is not None:
            await asyncio.to_thread(store.add_admin, group.number, creator.author_id)
        log.info("web group %s created", group.number)
        return group

    async def add_member(self, nickname: str) -> tuple[StoredMember, str]:
        return await asyncio.to_thread(self._require_store().add_member, nickname)

    async def member_by_key(self, key: str) -> StoredMember | None:
        store = self._require_store()
        return store.known_member(key) or await asyncio.to_thread(store.member_by_key, key)

    async def sign_out_others(self, member: StoredMember, key: str) -> int:
        try:
            return await asyncio.to_thread(self._require_store().sign_out_others, member.author_id, key)
        except LookupError as exc:  # the key was retired by another request meanwhile
            raise ApiError(401, "this member key no longer signs anyone in: sign in again",
                           need="member") from exc

    async def rename_member(self, member: StoredMember, nickname: str) -> StoredMember:
        await asyncio.to_thread(self._require_store().rename_member, member.author_id, nickname)
        return StoredMember(member.author_id, nickname)

    # ----------------------------------------------------------------- admins (AdminChecker, AdminGranter)

    async def is_chat_admin(self, chat: ChatRef, user: PersonRef) -> bool:
        """Web identities are proven by member keys, so a group's admins (its creator and whom admins named)
        are admins for the core too (``/settings``, ``/admin``)."""
        if self._store is None or chat.platform != PLATFORM or user.platform != PLATFORM:
            return False
        return await asyncio.to_thread(self._store.is_admin, chat.chat_id, user.user_id)

    async def grant_admin(self, chat: ChatRef, name: str) -> Grant:
        """Make the group's member called ``name`` an admin (``/admin add <nickname>``)."""
        store = self._require_store()
        found = await asyncio.to_thread(store.posters_named, chat.chat_id, name)
        if len(found) != 1:
            return Grant("unknown" if not found else "ambiguous", name)
        added = await asyncio.to_thread(store.add_admin, chat.chat_id, found[0])
        return Grant("granted" if added else "already", name)

    async def find_group(self, address: str) -> StoredGroup | None:
        store = self._require_store()
        known = store.known_group("address", address)
        return known or await asyncio.to_thread(store.group_by_address, address)

    async def find_by_number(self, number: str) -> StoredGroup | None:
        """The group numbered ``number`` if it lets people join by number; None as for no group at all."""
        group = await asyncio.to_thread(self._require_store().group, number)
        return group if group is not None and group.join_by_number else None

    async def is_group_admin(self, group: StoredGroup, member: StoredMember | None) -> bool:
        if member is None:
            return False
        return await asyncio.to_thread(self._require_store().is_admin, group.number, member.author_id)

    async def set_join_by_number(self, group: StoredGroup, allowed: bool) -> StoredGroup:
        await asyncio.to_thread(self._require_store().set_join_by_number, group.number, allowed)
        log.info("web group %s: joining by number %s", group.number, "allowed" if allowed else "off")
        return dataclasses.replace(group, join_by_number=allowed)

    async def new_links(self, group: StoredGroup) -> StoredGroup:
        """A new address and invite for ``group`` (an admin asked: a link went where it should not). The old
        ones find nothing from now on, and every page open on the group is told and disconnected: holding the
        old address no longer lets anyone read along. The group's number, history and memory stay."""
        self.hub.moves += 1  # before the change: a socket opening meanwhile checks its address again
        changed = await asyncio.to_thread(self._require_store().new_links, group.number)
        log.info("web group %s: new address and invite link; the old ones no longer work", group.number)
        await self.hub.close_group(group.number, {"type": "moved"})
        return changed

    async def find_invite(self, invite: str) -> StoredGroup | None:
        return await asyncio.to_thread(self._require_store().group_by_invite, invite)

    async def find_file(self, file_id: str) -> StoredFile | None:
        if not valid_file_id(file_id):
            return None
        return await asyncio.to_thread(self._require_store().file, file_id)

    def file_path(self, stored: StoredFile) -> Path:
        return self.attachments.path(stored)

    async def reserve_space(self, group: StoredGroup, expected: int) -> Reservation | None:
        """Space for a message of about ``expected`` bytes in the storage quota (None without a quota);
        ``ApiError(507)`` when that would pass it."""
        if self._quota is None:
            return None
        try:
            if self._quota.counted(group.number, expected):  # the common case: far from full, no measuring
                return self._quota.reserve(group.number, expected)
            return await asyncio.to_thread(self._quota.reserve, group.number, expected)
        except QuotaExceeded as exc:
            log.info("refused a message in group %s: %s", group.number, exc)
            raise ApiError(507, exc.why) from exc

    async def stage_upload(
        self, group: StoredGroup, name: str | None, mime: str | None, chunks: AsyncIterator[bytes],
        space: Reservation | None = None,
    ) -> StagedFile:
        """Write an upload aside, each chunk counted in ``space`` before it is written (507, nothing kept,
        once the storage quota would be passed)."""
        reserving = _reserving(chunks, space) if space is not None else chunks
        return await self.attachments.stage_upload(group.number, name, mime, reserving)

    async def drop_uploads(self, staged: Sequence[StagedFile]) -> None:
        await self.attachments.drop(staged)

    def check_served(self, group: StoredGroup) -> None:
        """Refuse (403) posts to a group the bot does not serve (``access.allowed_groups``): nothing of them
        is written anywhere, not even here."""
        serves = getattr(self._sink, "serves", None)
        if serves is not None and not serves(ChatRef(PLATFORM, group.number)):
            raise ApiError(403, "this group is not served here (the operator's access.allowed_groups)")

    def limits_json(self) -> dict[str, int]:
        return {"max_file_bytes": self.attachments.max_bytes, "max_files": self.attachments.max_files,
                "max_media_bytes": self.attachments.max_media_bytes}  # fmt: skip

    def group_json(self, group: StoredGroup) -> dict[str, Any]:
        """A group as those who hold its address or invite see it (they can read and post anyway)."""
        return {
            "address": group.address,
            "number": group.number,
            "name": group.name,
            "invite": group.invite,
            "invite_url": f"{self.base_url}/join/{group.invite}",
            "url": self.group_url(group),
            "key": f"{PLATFORM}:{group.number}",
            "join_by_number": group.join_by_number,
            "created_at": group.created_at.isoformat(),
        }

    def number_json(self, group: StoredGroup) -> dict[str, Any]:
        """What a lookup by number answers (only for a group that allows it): where to go, nothing more."""
        return {"address": group.address, "number": group.number, "name": group.name, "url": self.group_url(group)}

    async def post_message(
        self, group: StoredGroup, author: StoredMember, text: str, reply_to: int | None,
        nonce: str | None, uploads: Sequence[StagedFile] = (), space: Reservation | None = None,
    ) -> dict[str, Any]:
        """Store a member's message (with its staged ``uploads`` and the quota ``space`` they were counted
        in, which this call owns from now on) and commit it to the inbox; returns it once both are durable."""
        try:
            if space is None:
                space = await self.reserve_space(group, 0)
            stored = await self._post(group, author.author_id, author.nickname, text, reply_to, nonce, uploads,
                                      space)  # fmt: skip
        except BaseException:
            if space is not None:
                space.release()
            await self.drop_uploads(uploads)
            raise
        return stored

    async def _post(
        self, group: StoredGroup, author_id: str, author_name: str, text: str, reply_to: int | None,
        nonce: str | None, uploads: Sequence[StagedFile], space: Reservation | None,
    ) -> dict[str, Any]:
        self.check_served(group)
        if len(uploads) > self.attachments.max_files:
            raise ApiError(413, f"at most {self.attachments.max_files} files per message")
        if space is not None:  # the uploads' bytes are counted in it already; the text's before it is written
            _use(space, len(text.encode("utf-8")))
        msg, created, fresh = await self._store_post(group, author_id, author_name, text, reply_to, nonce, uploads)
        if space is not None:  # a retry's bytes were counted with its first attempt
            (space.keep if created else space.release)()
        if created and not uploads and msg.reply_to is None:
            rendered = message_json(msg, None, [], None)  # new, without files, quote or poll: nothing to read
        else:
            rendered = await self._render(msg)
        if fresh:
            await self.hub.push(group.number, {"type": "message", "message": rendered})
        return rendered

    async def _store_post(
        self, group: StoredGroup, author_id: str, author_name: str, text: str, reply_to: int | None,
        nonce: str | None, uploads: Sequence[StagedFile],
    ) -> tuple[StoredMessage, bool, bool]:
        """Store and commit a member's message: ``(message, created, newly visible)``. A retry of a message
        stored already (same nonce) writes nothing and drops its uploads: the first attempt's are kept."""
        store = self._require_store()
        try:
            files = await self.attachments.commit(uploads)  # bytes durable before any row names them
        except WebFileError as exc:
            raise ApiError(503, "the server could not store the file right now; please try again") from exc
        async with self._lock(group.number):
            target = None
            if reply_to is not None:
                target = await asyncio.to_thread(store.message, reply_to)
                if target is None or target.group != group.number or not target.delivered:
                    raise ApiError(400, f"'reply_to': there is no message {reply_to} in this group")
            msg, created = await asyncio.to_thread(
                store.add_message, group.number, author_id, author_name, text,
                reply_to=reply_to, delivered=False, nonce=nonce, files=files,
            )
            if not created:
                await self.attachments.drop(uploads)  # a retry: the first attempt's files are the ones kept
            if msg.delivered:  # a retry with the same nonce: already safe, nothing to do
                return msg, created, False
            # A new message without files has none to look up (the common case: no query per post).
            await self._commit(group, msg, target, [] if created and not files else None)
        return msg, created, True

    async def _commit(
        self, group: StoredGroup, msg: StoredMessage, target: StoredMessage | None,
        files: Sequence[StoredFile] | None = None,
    ) -> None:
        """Hand the message to the inbox and make it visible (``files``: its files, if known already)."""
        store = self._require_store()
        if files is None:
            files = (await asyncio.to_thread(store.files_of, [msg.id])).get(msg.id, [])
        try:
            await self._require_sink().submit([self.to_event(group, msg, target, files)])
        except Exception as exc:
            # The inbox did not take it: the message never became visible, so withdrawing it is honest.
            log.error("the inbox refused web message %s of group %s: %s", msg.id, group.number, exc)
            await self.attachments.drop_stored(await asyncio.to_thread(store.discard, msg.id))
            raise ApiError(503, "the bot could not store this message right now; please try again") from exc
        await asyncio.to_thread(store.mark_delivered, msg.id)

    async def list_messages(self, group: StoredGroup, after: int | None, limit: int) -> dict[str, Any]:
        msgs, more = await asyncio.to_thread(self._require_store().list_messages, group.number, after, limit)
        return {"messages": await self._render_many(msgs), "has_more": more}

    # ----------------------------------------------------------------- translation

    def group_url(self, group: StoredGroup) -> str:
        return f"{self.base_url}/g/{group.address}"

    def message_url(self, group: StoredGroup, message_id: int) -> str:
        return f"{self.group_url(group)}#m{message_id}"

    def mentions_bot(self, text: str) -> bool:
        return bool(self._mention.search(text))

    def to_event(
        self, group: StoredGroup, msg: StoredMessage, target: StoredMessage | None,
        files: Sequence[StoredFile] = (),
    ) -> Message:
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
            attachments=tuple(attachment(f) for f in files),
            url=self.message_url(group, msg.id),
        )

    async def _render(self, msg: StoredMessage) -> dict[str, Any]:
        [rendered] = await self._render_many([msg])
        return rendered

    async def _render_many(self, msgs: Sequence[StoredMessage]) -> list[dict[str, Any]]:
        """Messages as the API shows them (files and polls looked up once for the whole batch)."""
        store = self._require_store()
        ids = [m.id for m in msgs]
        quoted = [m.reply_to for m in msgs if m.reply_to is not None]
        files = await asyncio.to_thread(store.files_of, ids + quoted) if ids else {}
        polls = await asyncio.to_thread(store.polls_of, ids) if ids else {}
        out = []
        for m in msgs:
            target = await asyncio.to_thread(store.message, m.reply_to) if m.reply_to is not None else None
            target_files = files.get(target.id, []) if target is not None else []
            out.append(message_json(m, target, files.get(m.id, []), polls.get(m.id), target_files))
        return out

# --------------------------------------------------------------------------- helpers and factory


async def _reserving(chunks: AsyncIterator[bytes], space: Reservation) -> AsyncIterator[bytes]:
    """``chunks``, each counted in the storage quota before it is handed on to be written."""
    async for chunk in chunks:
        _use(space, len(chunk))
        yield chunk


def _use(space: Reservation, size: int) -> None:
    try:
        space.use(size)
    except QuotaExceeded as exc:
        log.info("refused a message in group %s: %s", space.group, exc)
        raise ApiError(507, exc.why) from exc


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


def create_adapter(cfg: WebAdapterSettings, env: AdapterEnv) -> WebAdapter:
    """The factory of the ``web`` plugin (``adapters.web``)."""
    return WebAdapter(
        bot_name=env.bot_name,
        data_dir=Path(env.data_dir),
        host=cfg.host,
        port=cfg.port,
        access_token=cfg.access_token,
        public_url=cfg.public_url,
        max_attachment_bytes=env.max_attachment_bytes,
        max_media_bytes=cfg.max_media_bytes,
        metrics=env.metrics,
        guard=WebGuard(
            ClientLimits(ClientRules(
                sockets=cfg.sockets_per_client, socket_opens_per_minute=cfg.socket_opens_per_client_per_minute,
                socket_messages_per_s=cfg.socket_messages_per_s, posts_per_s=cfg.posts_per_s,
                groups_per_hour=cfg.groups_per_client_per_hour, members_per_hour=cfg.members_per_client_per_hour,
                misses_per_hour=cfg.missed_lookups_per_client_per_hour,
            )),
            (env.bot_name, *env.bot_aliases), trust_forwarded_for=cfg.trust_forwarded_for,
        ),
        quota_mb=(cfg.group_storage_mb, cfg.storage_mb),
    )
