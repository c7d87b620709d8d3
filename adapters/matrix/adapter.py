"""Matrix adapter on matrix-nio's ``AsyncClient``: the AI member in Matrix rooms.

Configuration: ``adapters.matrix`` (``adapters.matrix.config.MatrixAdapterSettings``). The bot logs in with a password
(keeping one device id across restarts: the configured ``device_id``, else the one stored in the cursor
store under ``matrix:device_id``) or with an ``access_token``.

Intake (``adapters.matrix.sync``): our own sync loop commits each batch and its ``next_batch`` token to the
durable inbox before using the token; gaps are backfilled; invites are accepted only from
``allowed_inviters``.

Delivery: replies carry ``m.in_reply_to`` (inside the trigger's thread when it was in one, ``m.thread``),
``m.mentions`` lists only the people the core means to address (never the room), ``@room`` is neutralised,
Markdown becomes a small safe HTML subset, long texts are split, and every part gets a transaction id
derived from ``Outgoing.idempotency_key`` so a retried send is not duplicated by the homeserver.

End-to-end encryption is not supported (nio without libolm): encrypted rooms are told so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import re
import uuid
from dataclasses import replace
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    LoginResponse,
    RoomPreset,
    UploadResponse,
    WhoamiResponse,
)

from adapters.matrix.convert import Me
from adapters.matrix.format import matrix_to, message_content, split_text, transaction_id
from adapters.matrix.retry import TRANSPORT_ERRORS, RetryPolicy, is_rate_limited, is_transient
from adapters.matrix.sync import MatrixSync, QuoteCache, SyncOptions
from adapters.matrix.config import MatrixAdapterSettings
from bot.errors import (
    AdapterConfigError,
    CredentialsRejected,
    DeliveryError,
    PaibotError,
    PlatformUnavailable,
)
from bot.events import Attachment, ChatRef, Outgoing, OutgoingFile, PersonRef, SentRef
from bot.ports import AdapterEnv, Capabilities, IntakeSink

log = logging.getLogger("paibot.matrix")

DEVICE_ID = "matrix:device_id"
DM_ROOM = "matrix:dm:"  # + user id: the bot's direct room with that user (cursor store)
MAX_PART_CHARS = 16_000
MAX_PART_BYTES = 24_000  # body + HTML must stay well under the 65 KB event limit, also for CJK text
_MXC = re.compile(r"^mxc://([A-Za-z0-9.\-]+(?::\d+)?)/([A-Za-z0-9_\-]+)$")


class MatrixAdapter:
    """A ``ChatAdapter`` (plus ``AttachmentFetcher``) for one Matrix account."""

    name = "matrix"
    capabilities = Capabilities(
        max_text_length=MAX_PART_CHARS, edit=True, polls=False, files=True, threads=True,
        reactions=False, typing=True, links=True, idempotent_sends=True,
    )

    def __init__(self, cfg: MatrixAdapterSettings, *, core_prefix: str = "/",
                 options: SyncOptions | None = None,
                 request_timeout_s: float = 60.0, retry: RetryPolicy | None = None) -> None:
        self._cfg = cfg
        self._core_prefix = core_prefix
        self._options = options or SyncOptions(allowed_inviters=cfg.allowed_inviters)
        self._request_timeout_s = request_timeout_s
        self._retry = retry or RetryPolicy()
        self._client: AsyncClient | None = None
        self._sink: IntakeSink | None = None
        self._me = Me(cfg.user_id, (), cfg.command_prefixes, core_prefix)
        self._quotes = QuoteCache()
        self._sync: MatrixSync | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def user_id(self) -> str:
        return self._me.user_id

    @property
    def synced(self) -> asyncio.Event:
        """Set once the first sync batch is committed (tests and health checks wait on it)."""
        if self._sync is None:
            raise RuntimeError("adapter not started")
        return self._sync.synced

    # ----------------------------------------------------------------- lifecycle

    async def start(self, sink: IntakeSink) -> None:
        """One connection attempt (see ``bot.supervisor`` for the contract): ``PlatformUnavailable`` when the
        homeserver cannot be reached or answers 5xx/429, ``CredentialsRejected`` when it refuses the password
        or access token; a failed attempt leaves nothing open, so ``start`` may be called again."""
        if self._task is not None:
            return
        self._sink = sink
        device_id = self._cfg.device_id or await sink.cursor(DEVICE_ID) or ""
        config = AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, store_sync_tokens=False,
                                   encryption_enabled=False, request_timeout=self._request_timeout_s)
        self._client = AsyncClient(self._cfg.homeserver.rstrip("/"), self._cfg.user_id, device_id=device_id,
                                   config=config)
        try:
            await self._login(attempts=1)  # one attempt: the supervisor owns the retries of a start
            await self._load_profile()
        except BaseException:
            await self._client.close()
            self._client = None
            raise
        self._sync = MatrixSync(self._client, sink, lambda: self._me, self._options, self._quotes,
                                self._notice, self._relogin, self._retry)
        self._task = asyncio.create_task(self._sync.run(), name="matrix:sync")
        self._task.add_done_callback(_log_crash)
        log.info("matrix: running as %s (device %s)", self._me.user_id, self._client.device_id)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=10.0)
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _login(self, attempts: int | None = None) -> None:
        client = self._client
        assert client is not None and self._sink is not None
        if self._cfg.access_token:
            client.access_token = self._cfg.access_token
            resp = await self._call(client.whoami, "whoami", attempts)
            if not isinstance(resp, WhoamiResponse):
                raise self._refusal(resp, token=True)
            if resp.user_id != self._cfg.user_id:
                raise AdapterConfigError(
                    f"matrix: the access token belongs to {resp.user_id}, not adapters.matrix.user_id "
                    f"({self._cfg.user_id})")
            client.user_id = resp.user_id
            if resp.device_id:
                client.device_id = resp.device_id
            return
        resp = await self._call(lambda: client.login(self._cfg.password, device_name=self._cfg.device_name),
                                "login", attempts)
        if not isinstance(resp, LoginResponse):
            raise self._refusal(resp, token=False)
        if resp.device_id and resp.device_id != await self._sink.cursor(DEVICE_ID):
            await self._sink.submit([], cursor_key=DEVICE_ID, cursor=resp.device_id)

    def _refusal(self, resp: Any, *, token: bool) -> PaibotError:
        """What a failed login (or token check) means: an outage to wait out, or what the operator must do."""
        where, user = self._cfg.homeserver, self._cfg.user_id
        if is_transient(resp):
            wait = resp.retry_after_ms / 1000 if is_rate_limited(resp) and resp.retry_after_ms else None
            return PlatformUnavailable(f"the Matrix homeserver at {where} is not answering ({resp})",
                                       retry_after=wait)
        if getattr(resp, "status_code", None) in ("M_UNKNOWN_TOKEN", "M_FORBIDDEN", "M_USER_DEACTIVATED"):
            if token:
                return CredentialsRejected(
                    f"matrix: the homeserver {where} rejected adapters.matrix.access_token for {user} "
                    f"({resp}). Get a new access token for that account (or set adapters.matrix.password "
                    "instead), put it in the environment variable your config.yaml reads and start again.")
            return CredentialsRejected(
                f"matrix: the homeserver {where} refused the login of {user} ({resp}). Check "
                "adapters.matrix.user_id and adapters.matrix.password (in the environment variable your "
                "config.yaml reads) and start again.")
        what = "the access token check" if token else f"login as {user}"
        return AdapterConfigError(f"matrix: {what} at {where} failed ({resp}); check "
                                  "adapters.matrix.homeserver and adapters.matrix.user_id")

    async def _relogin(self) -> bool:
        """After ``M_UNKNOWN_TOKEN``: log in again when we have a password (same device)."""
        if not self._cfg.password or self._client is None:
            log.error("matrix: the access token was revoked; set a new adapters.matrix.access_token")
            return False
        try:
            await self._login()
        except PlatformUnavailable as exc:
            log.warning("matrix: could not log in again yet: %s", exc)
            return False
        except AdapterConfigError as exc:
            log.error("%s", exc)
            return False
        return True

    async def _call(self, call: Any, what: str, attempts: int | None = None) -> Any:
        try:
            return await self._retry.call(call, what=f"matrix {what}", attempts=attempts)
        except TRANSPORT_ERRORS as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise PlatformUnavailable(
                f"cannot reach the Matrix homeserver at {self._cfg.homeserver} ({what}: {detail})") from exc

    async def _load_profile(self) -> None:
        assert self._client is not None
        client = self._client
        resp = await self._call(lambda: client.get_displayname(self._me.user_id), "displayname", attempts=1)
        name = getattr(resp, "displayname", None)
        self._me = replace(self._me, user_id=self._client.user_id, display_names=(name,) if name else ())

    # ----------------------------------------------------------------- delivery

    async def send(self, out: Outgoing) -> SentRef:
        client = self._ready()
        room_id = out.chat.chat_id
        ids: list[str] = []
        self._begin()
        try:
            parts = split_text(out.text, MAX_PART_CHARS, MAX_PART_BYTES) if out.text.strip() else []
            for i, text in enumerate(parts):
                content = message_content(text)
                content.update(self._relations(out, first=i == 0))
                ids.append(await self._put(client, room_id, content, out.idempotency_key, i))
                self._quotes.put(ids[-1], self._me.user_id, text[:500])
            for j, f in enumerate(out.files):
                content = await self._file_content(client, f)
                content.update(self._relations(out, first=not ids))
                ids.append(await self._put(client, room_id, content, out.idempotency_key, len(parts) + j))
        finally:
            self._end()
        if not ids:
            raise DeliveryError("matrix: nothing to send (empty text and no files)")
        return SentRef(out.chat, ids[0], matrix_to(room_id, ids[0]), tuple(ids))

    def _relations(self, out: Outgoing, first: bool) -> dict[str, Any]:
        """Reply/thread relations and intentional mentions for one part (only the first part pings)."""
        users = sorted({u.removeprefix("matrix:") for u in out.mention_user_ids}
                       if first else set())
        users = [u for u in users if u.startswith("@") and ":" in u and u != self._me.user_id]
        rel: dict[str, Any] = {}
        if out.thread:
            rel = {"rel_type": "m.thread", "event_id": out.thread}
            if out.reply_to and first:
                rel |= {"is_falling_back": False, "m.in_reply_to": {"event_id": out.reply_to}}
            else:
                rel |= {"is_falling_back": True, "m.in_reply_to": {"event_id": out.reply_to or out.thread}}
        elif out.reply_to and first:
            rel = {"m.in_reply_to": {"event_id": out.reply_to}}
        content: dict[str, Any] = {"m.mentions": {"user_ids": users}}
        if rel:
            content["m.relates_to"] = rel
        return content

    async def _put(self, client: AsyncClient, room_id: str, content: dict[str, Any], key: str,
                   part: int) -> str:
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        tx_id = transaction_id(key, part, digest) if key else f"paibot.{uuid.uuid4().hex}"
        try:
            resp = await self._retry.call(
                lambda: client.room_send(room_id, "m.room.message", content, tx_id=tx_id,
                                         ignore_unverified_devices=True),
                what=f"send to {room_id}",
            )
        except TRANSPORT_ERRORS as exc:  # safe to repeat: the transaction id deduplicates it
            raise PlatformUnavailable(f"matrix: homeserver unreachable while sending to {room_id}") from exc
        if isinstance(resp, ErrorResponse):
            raise DeliveryError(f"matrix: sending to {room_id} failed: {resp}")
        return str(resp.event_id)

    async def _file_content(self, client: AsyncClient, f: OutgoingFile) -> dict[str, Any]:
        data = f.data

        async def upload_once() -> Any:
            mime = f.mime or "application/octet-stream"
            resp, _keys = await client.upload(io.BytesIO(data), content_type=mime, filename=f.name,
                                              filesize=len(data))
            return resp

        try:
            resp = await self._retry.call(upload_once, what="upload")
        except TRANSPORT_ERRORS as exc:
            raise PlatformUnavailable("matrix: homeserver unreachable while uploading") from exc
        if not isinstance(resp, UploadResponse):
            raise DeliveryError(f"matrix: upload of {f.name} failed: {resp}")
        kind = "m.image" if f.mime.startswith("image/") else "m.file"
        return {"msgtype": kind, "body": f.name, "filename": f.name, "url": resp.content_uri,
                "info": {"mimetype": f.mime, "size": len(data)}}

    async def edit(self, ref: SentRef, text: str) -> None:
        client = self._ready()
        room_id = ref.chat.chat_id
        new = message_content(split_text(text, MAX_PART_CHARS, MAX_PART_BYTES)[0])
        new["m.mentions"] = {}
        content = {
            "msgtype": "m.text", "body": f"* {new['body']}", "m.new_content": new, "m.mentions": {},
            "m.relates_to": {"rel_type": "m.replace", "event_id": ref.message_id},
        }
        self._begin()
        try:
            await self._put(client, room_id, content, "", 0)
        finally:
            self._end()

    async def delete(self, ref: SentRef) -> None:
        """``bot.ports.MessageDeleter``: redact the bot's events (every part); one already gone is fine.
        The transaction id comes from the event, so a repeated redaction is not doubled."""
        client = self._ready()
        room_id = ref.chat.chat_id
        self._begin()
        try:
            for event_id in dict.fromkeys((ref.message_id, *ref.part_ids)):
                tx_id = transaction_id(f"redact:{event_id}", 0, "")
                try:
                    resp = await self._retry.call(lambda e=event_id, t=tx_id: client.room_redact(room_id, e, tx_id=t),
                                                  what=f"redact in {room_id}")
                except TRANSPORT_ERRORS as exc:
                    raise PlatformUnavailable(f"matrix: homeserver unreachable while redacting in {room_id}") from exc
                if isinstance(resp, ErrorResponse) and getattr(resp, "status_code", "") != "M_NOT_FOUND":
                    raise DeliveryError(f"matrix: redacting in {room_id} failed: {resp}")
        finally:
            self._end()

    async def send_direct(self, user: PersonRef, text: str) -> SentRef:
        """``bot.ports.DirectMessenger``: write in the bot's direct room with ``user``, created (and the
        user invited) the first time; the room is remembered in the cursor store."""
        client = self._ready()
        if not (user.user_id.startswith("@") and ":" in user.user_id):
            raise DeliveryError(f"matrix: not a user id: {user.user_id!r}")
        key = f"{DM_ROOM}{user.user_id}"
        room_id = await self._require_sink().cursor(key)
        if not room_id:
            resp = await self._call(lambda: client.room_create(is_direct=True, invite=[user.user_id],
                                                               preset=RoomPreset.trusted_private_chat),
                                    f"open a direct room with {user.user_id}")
            if isinstance(resp, ErrorResponse):
                raise DeliveryError(f"matrix: could not open a direct room with {user.user_id}: {resp}")
            room_id = str(resp.room_id)
            await self._require_sink().submit([], cursor_key=key, cursor=room_id)
        return await self.send(Outgoing(ChatRef(self.name, room_id), text,
                                        idempotency_key=f"direct:{hashlib.sha256(text.encode()).hexdigest()[:16]}"))

    def _require_sink(self) -> IntakeSink:
        if self._sink is None:
            raise DeliveryError("matrix: adapter is not running")
        return self._sink

    async def typing(self, chat: ChatRef) -> None:
        client = self._client
        if client is None:
            return
        try:
            resp = await client.room_typing(chat.chat_id, True, timeout=8_000)
        except TRANSPORT_ERRORS as exc:
            log.debug("matrix: typing in %s failed: %s", chat.chat_id, exc)
            return
        if isinstance(resp, ErrorResponse):
            log.debug("matrix: typing in %s refused: %s", chat.chat_id, resp)

    async def _notice(self, room_id: str, text: str) -> None:
        content = {"msgtype": "m.notice", "body": text, "m.mentions": {}}
        await self._put(self._ready(), room_id, content, f"e2e-notice:{room_id}", 0)

    # ----------------------------------------------------------------- attachments

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        """Download an ``mxc://`` attachment (authenticated media API), refusing past ``max_bytes``."""
        client = self._ready()
        m = _MXC.match(att.source)
        if m is None:
            raise DeliveryError(f"matrix: not a downloadable mxc URL: {att.source!r}")
        if att.size > max_bytes:
            raise DeliveryError(f"matrix: {att.name} is {att.size} bytes, over the {max_bytes} byte limit")
        url = f"{client.homeserver}/_matrix/client/v1/media/download/{m.group(1)}/{m.group(2)}"
        headers = {"Authorization": f"Bearer {client.access_token}"}
        timeout = aiohttp.ClientTimeout(total=self._request_timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(url, headers=headers) as r:
                if r.status != 200:
                    raise DeliveryError(f"matrix: download of {att.name} failed with HTTP {r.status}")
                data = bytearray()
                async for chunk in r.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > max_bytes:
                        raise DeliveryError(f"matrix: {att.name} is over the {max_bytes} byte limit")
                return bytes(data)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DeliveryError(f"matrix: download of {att.name} failed: {exc}") from exc

    # ----------------------------------------------------------------- helpers

    def _ready(self) -> AsyncClient:
        if self._client is None:
            raise DeliveryError("matrix: adapter is not running")
        return self._client

    def _begin(self) -> None:
        self._inflight += 1
        self._idle.clear()

    def _end(self) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("matrix: the sync loop stopped: %r", task.exception(), exc_info=task.exception())


def create_adapter(cfg: MatrixAdapterSettings, env: AdapterEnv) -> MatrixAdapter:
    """The factory of the ``matrix`` plugin (``adapters.matrix``)."""
    prefixes = env.command_prefixes
    return MatrixAdapter(cfg, core_prefix=prefixes[0] if prefixes else "/")
