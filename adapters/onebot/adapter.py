"""The OneBot v11 adapter: the AI member in QQ groups and private chats, through NapCat, Lagrange or
LLOneBot (any implementation of the OneBot 11 standard).

Intake: every message event (and ``group_upload`` notice; recall notices as deletions) becomes a core event
(``adapters.onebot.convert``) committed to the inbox one at a time, in arrival order, together with the catch-up cursor (the time of the
newest message committed). Each time the link becomes ready (start, reconnect) every group of the account is
caught up from ``get_group_msg_history`` back to a little before that time (``adapters.onebot.backfill``).

Sending: ``send_group_msg`` / ``send_private_msg`` with a ``reply`` segment quoting the message answered and
an ``at`` of its author (``send_direct``: a private message), the text split at ``message_limit`` characters,
images as ``base64://`` image segments; ``delete_msg`` recalls the bot's messages (``delete``); paced per chat (``adapters.onebot.pacing``) and journaled (``adapters.onebot.journal``). Errors:
not connected -> PlatformUnavailable (the core retries later); no answer -> DeliveryUncertain (never
repeated); ``retcode`` 1400/1404 or a refused token -> DeliveryError; any other failure is retried once
after a pause, then DeliveryError.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from typing import Any

import aiohttp

from adapters.onebot import backfill
from adapters.onebot.config import OneBotSettings
from adapters.onebot.convert import (
    PLATFORM,
    RECALLS,
    MalformedEvent,
    Me,
    private_chat,
    recall_event,
    target_of,
    to_event,
    upload_event,
)
from adapters.onebot.forward import ForwardLink
from adapters.onebot.http import HttpLink
from adapters.onebot.journal import SendJournal
from adapters.onebot.link import AUTH_RETCODES, ActionFailed, Link
from adapters.onebot.lookups import OneBotLookups
from adapters.onebot.pacing import ChatPacer, Pacing, SystemClock
from adapters.onebot.reverse import ReverseLink
from adapters.onebot.text import outgoing_segments, split_text, wire_message
from bot.errors import DeliveryError, DeliveryUncertain, PlatformUnavailable
from bot.events import Attachment, ChatRef, Message, Outgoing, PersonRef, SentRef
from bot.ports import AdapterEnv, Capabilities, Clock, Erasure, IntakeSink

log = logging.getLogger("paibot.onebot")

RETRY_PAUSE_S = 5.0
GIVE_UP_RETCODES = (1400, 1404, *AUTH_RETCODES)


class OneBotAdapter:
    """``ChatAdapter`` (plus ``AttachmentFetcher``, ``AdminChecker``, ``SendJournal``, ``ContentEraser``) for
    OneBot v11."""

    name = PLATFORM

    def __init__(
        self,
        settings: OneBotSettings,
        env: AdapterEnv,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._s = settings
        self._env = env
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.capabilities = Capabilities(max_text_length=settings.message_limit, files=True)
        pacing = Pacing(settings.send_interval_s, min(0.5, settings.send_interval_s / 2),
                        settings.group_per_minute, settings.global_per_minute)  # fmt: skip
        self._pacer = ChatPacer(self._clock, pacing, self._rng)
        self.lookups = OneBotLookups(self._call, self._clock)
        self._journal = SendJournal(None)
        self._sink: IntakeSink | None = None
        self._link: Link | None = None
        self.me: Me | None = None
        self._intake = asyncio.Lock()
        self._last: float | None = None  # the catch-up cursor, once read
        # Until a catch-up has noted where it starts, live events must not move the cursor: they may be
        # newer than messages pushed while nobody listened (see _catch_up).
        self._hold = True
        self._history_offered = True
        self._catchups: set[asyncio.Task[None]] = set()
        self._catching = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------------- lifecycle

    def _make_link(self) -> Link:
        s = self._s
        if s.mode == "reverse":
            return ReverseLink(s.listen, s.port, s.path, s.access_token, self._on_event, self._on_ready,
                               call_timeout_s=s.call_timeout_s, on_lost=self._on_lost)  # fmt: skip
        if s.mode == "http":
            return HttpLink(s.url, s.access_token, s.secret, s.listen, s.port, s.path, self._on_event,
                            self._on_ready, call_timeout_s=s.call_timeout_s,
                            on_lost=self._on_lost)  # fmt: skip
        return ForwardLink(s.url, s.access_token, self._on_event, self._on_ready, clock=self._clock,
                           rng=self._rng, call_timeout_s=s.call_timeout_s, on_lost=self._on_lost)  # fmt: skip

    @property
    def link(self) -> Link | None:
        return self._link

    async def start(self, sink: IntakeSink) -> None:
        if self._link is not None:
            raise RuntimeError("the OneBot adapter is already started")
        self._sink = sink
        self._journal = SendJournal(sink)
        link = self._make_link()
        self._link = link
        try:
            await link.start()
        except BaseException:
            self._link = None
            await link.stop()
            raise
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120, connect=15))

    async def stop(self) -> None:
        tasks, self._catchups = self._catchups, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        link, self._link = self._link, None
        if link is not None:
            await link.stop()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _call(self, action: str, params: dict[str, Any]) -> Any:
        link = self._link
        if link is None:
            raise PlatformUnavailable("the OneBot adapter is not running")
        return await link.call(action, params)

    async def _identity(self) -> Me:
        if self.me is None:
            data = await self._call("get_login_info", {})
            if not isinstance(data, dict) or data.get("user_id") in (None, ""):
                raise DeliveryError("get_login_info did not name the QQ account")
            self_id = str(data["user_id"])
            self.me = Me(self_id, self._env.bot_name)
            log.info("onebot: serving QQ %s (%s)", self_id, data.get("nickname") or "?")
        return self.me

    async def _on_ready(self) -> None:
        """The link is (again) up: learn who we are and catch up on history in the background."""
        try:
            await self._identity()
        except Exception as exc:  # noqa: BLE001 - events name the account too; catching up waits for it
            log.warning("onebot: could not ask the implementation which QQ account it serves: %s", exc)
            return
        if self._s.backfill and self._s.backfill_pages > 0:
            task = asyncio.create_task(self._catch_up(), name="onebot-backfill")
            self._catchups.add(task)
            task.add_done_callback(self._catchups.discard)

    # ----------------------------------------------------------------- intake

    async def _on_event(self, raw: dict[str, Any]) -> None:
        post = raw.get("post_type")
        if post not in ("message", "message_sent", "notice"):
            return
        notice = raw.get("notice_type")
        if post == "notice" and notice != "group_upload" and notice not in RECALLS:
            return
        me = self.me
        if me is None and raw.get("self_id") is not None:
            me = self.me = Me(str(raw["self_id"]), self._env.bot_name)
        if me is None:
            me = await self._identity()
        try:
            convert = to_event if post != "notice" else recall_event if notice in RECALLS else upload_event
            event = await convert(raw, me, self.lookups)
        except MalformedEvent as exc:
            log.warning("onebot: skipping a malformed %s event: %s", post, exc)
            return
        if event is None:
            return
        if not event.is_direct and not event.deleted:
            self.lookups.note_member(event.chat.chat_id, event.author.user_id, event.author.display_name)
        await self._commit([event])

    def _on_lost(self) -> None:
        self._hold = True

    async def _commit(self, events: list[Message]) -> int:
        """Commit events (in order) together with the catch-up cursor: the time of the newest message
        paibot has committed, in any chat (QQ's clock, seconds), unless a gap has not been caught up."""
        assert self._sink is not None
        async with self._intake:
            if self._hold:
                return await self._sink.submit(events)
            newest = max([e.sent_at.timestamp() for e in events] + [await self._cursor()])
            added = await self._sink.submit(events, cursor_key=backfill.CURSOR_KEY, cursor=str(newest))
            self._last = newest
        return added

    async def _cursor(self) -> float:
        if self._last is None:
            assert self._sink is not None
            raw = await self._sink.cursor(backfill.CURSOR_KEY)
            try:
                self._last = float(raw) if raw else 0.0
            except ValueError:
                self._last = 0.0
        return self._last

    async def _catch_up(self) -> None:
        """Fetch every group's messages since a little before the newest one paibot committed before the
        gap, or since where an earlier catch-up that did not finish (a kill, a failure) began. One at a
        time. From the start and from each lost connection until here, live events did not move the
        cursor (``_hold``): otherwise one committed right after a reconnect would hide the gap before it."""
        async with self._catching:
            assert self._sink is not None
            last = await self._cursor()
            raw = await self._sink.cursor(backfill.PENDING_KEY)
            starts = [last - backfill.SLACK_S] if last else []
            try:
                starts += [float(raw)] if raw else []
            except ValueError:
                pass
            if not starts or not self._history_offered:
                self._hold = False  # the first start: what came before is for `paibot memory import`
                return
            since = min(starts)
            # Live messages move the cursor on from now: remember where this began until it is done.
            await self._sink.submit([], cursor_key=backfill.PENDING_KEY, cursor=str(since))
            self._hold = False
            if await self._fetch_groups(since):
                await self._sink.submit([], cursor_key=backfill.PENDING_KEY, cursor="")

    async def _fetch_groups(self, since: float) -> bool:
        """Catch every group up from ``since``; True when every group was done (or history is not offered)."""
        me = await self._identity()
        try:
            groups = await self._call("get_group_list", {})
        except (ActionFailed, DeliveryError) as exc:
            log.warning("onebot: cannot list the groups to catch up on (%s)", exc)
            return False
        total, complete = 0, True
        for item in groups if isinstance(groups, list) else ():
            gid = str(item.get("group_id", "")) if isinstance(item, dict) else ""
            if not gid.isdigit():
                continue
            try:
                raws = await backfill.history(
                    self._call, gid, since, self._s.backfill_page_size, self._s.backfill_pages
                )
            except ActionFailed as exc:
                if exc.retcode == 1404 or "不支持" in exc.message or "support" in exc.message.lower():
                    self._history_offered = False
                    log.warning(
                        "onebot: the implementation does not offer get_group_msg_history: messages sent "
                        "while paibot was not connected cannot be caught up (see docs/qq.md)"
                    )
                    return True
                log.warning("onebot: catching up on group %s failed: %s", gid, exc)
                complete = False
                continue
            except DeliveryError as exc:
                log.warning("onebot: catching up stopped: %s", exc)
                return False
            events: list[Message] = []
            for raw in raws:
                raw.setdefault("message_type", "group")
                raw.setdefault("group_id", gid)
                try:
                    event = await to_event(raw, me, self.lookups)
                except MalformedEvent as exc:
                    log.warning("onebot: skipping a malformed history message in group %s: %s", gid, exc)
                    continue
                if event is not None:
                    events.append(event)
            if events:
                total += await self._commit(events)
        if total:
            log.info("onebot: caught up on %d message(s) sent while paibot was not listening", total)
        return complete

    # ----------------------------------------------------------------- sending

    def _messages(self, out: Outgoing, kind: str) -> list[list[dict[str, Any]]]:
        items: list[list[dict[str, Any]]] = []
        mention = out.mention_user_ids if kind == "group" else ()
        for i, part in enumerate(split_text(out.text, self._s.message_limit)):
            first = i == 0
            items.append(outgoing_segments(part, out.reply_to if first else None, mention if first else ()))
        for f in out.files:
            encoded = "base64://" + base64.b64encode(f.data).decode()
            seg_type = "image" if f.mime.startswith("image/") else "file"
            data = {"file": encoded} if seg_type == "image" else {"file": encoded, "name": f.name}
            quote = outgoing_segments("", out.reply_to) if not items else []
            items.append([*quote, {"type": seg_type, "data": data}])
        return items

    async def send(self, out: Outgoing) -> SentRef:
        try:
            kind, target = target_of(out.chat.chat_id)
        except ValueError as exc:
            raise DeliveryError(f"not a OneBot chat: {out.chat.chat_id}") from exc
        items = self._messages(out, kind)
        if not items:
            raise DeliveryError("nothing to send: the text is empty")
        key = SendJournal.key_for(out)
        sent = await self._journal.delivered(key)
        action = "send_group_msg" if kind == "group" else "send_private_msg"
        id_field = "group_id" if kind == "group" else "user_id"
        async with self._pacer.turn(out.chat.chat_id):
            for i, segments in enumerate(items):
                if i < len(sent):
                    continue  # delivered before a crash, the journal says
                params = {id_field: target, "message": wire_message(segments, self._s.message_format)}
                before = lambda n=i: self._journal.attempting(key, sent, n)  # noqa: E731 - bound per part
                mid = await self._send_one(out.chat.chat_id, action, params, before)
                sent.append(mid)
                await self._journal.record(key, sent)
        return SentRef(out.chat, sent[0], part_ids=tuple(sent), sent_at=self._clock.now())

    async def _send_one(self, chat: str, action: str, params: dict[str, Any], before: Any) -> str:
        for attempt in (1, 2):
            await self._pacer.slot(chat)
            await before()
            try:
                data = await self._call(action, params)
            except ActionFailed as exc:
                if exc.retcode in AUTH_RETCODES:
                    log.error("onebot: the implementation refused paibot's access token (%s)", exc)
                if exc.retcode in GIVE_UP_RETCODES:
                    raise DeliveryError(f"QQ refused the message: {exc}") from exc
                if "timeout" in exc.message.lower() or "超时" in exc.message:
                    raise DeliveryUncertain(f"QQ did not confirm the message: {exc}") from exc
                if attempt == 2:
                    raise DeliveryError(f"QQ refused the message twice: {exc}") from exc
                log.warning("onebot: %s in %s; trying once more in %.0fs", exc, chat, RETRY_PAUSE_S)
                self._pacer.hold(chat, RETRY_PAUSE_S)
                continue
            mid = data.get("message_id") if isinstance(data, dict) else None
            return str(mid) if mid is not None else f"unconfirmed:{self._rng.randrange(1 << 30)}"
        raise AssertionError("unreachable")

    async def edit(self, ref: SentRef, text: str) -> None:
        raise DeliveryError("QQ messages cannot be edited")

    async def delete(self, ref: SentRef) -> None:
        """Recall the bot's message, every part (``delete_msg``; ``bot.ports.MessageDeleter``). QQ lets the
        bot recall its own messages for two minutes, longer where it is a group admin: a refusal is a
        ``DeliveryError`` (the message stays)."""
        for mid in dict.fromkeys((ref.message_id, *ref.part_ids)):
            if not mid.lstrip("-").isdigit():
                continue  # never confirmed by QQ: nothing to name
            try:
                await self._call("delete_msg", {"message_id": int(mid)})
            except ActionFailed as exc:
                raise DeliveryError(f"QQ refused to recall message {mid}: {exc}") from exc

    async def send_direct(self, user: PersonRef, text: str) -> SentRef:
        """A private message to one member (``bot.ports.DirectMessenger``). QQ delivers it to the bot's
        friends and, through the group, to members of a group they share; otherwise ``DeliveryError``."""
        return await self.send(Outgoing(private_chat(user.user_id), text))

    async def typing(self, chat: ChatRef) -> None:
        return None

    async def delivery_attempted(self, out: Outgoing) -> bool:
        return await self._journal.attempted(SendJournal.key_for(out))

    # ----------------------------------------------------------------- forgetting

    async def passages(self, erasure: Erasure) -> list[str]:
        return []  # the caches hold copies of what the inbox and the memory name already

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """The names and quoted messages cached in memory (``adapters.onebot.lookups``) it reaches."""
        n = self.lookups.forget(erasure)
        return {"cached copies": n} if n else {}

    # ----------------------------------------------------------------- attachments, admins

    async def is_chat_admin(self, chat: ChatRef, user: PersonRef) -> bool:
        kind, target = target_of(chat.chat_id)
        if kind != "group" or not user.user_id.isdigit():
            return False
        try:
            params = {"group_id": target, "user_id": int(user.user_id), "no_cache": True}
            data = await self._call("get_group_member_info", params)
        except (ActionFailed, DeliveryError):
            return False
        return isinstance(data, dict) and data.get("role") in ("owner", "admin")

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        limit = min(max_bytes, self._env.max_attachment_bytes)
        if att.size and att.size > limit:
            raise DeliveryError(f"{att.name} is {att.size} bytes, over the {limit}-byte limit")
        url, inline = await self._locate(att)
        if inline is not None:
            if len(inline) > limit:
                raise DeliveryError(f"{att.name} is over the {limit}-byte limit")
            return inline
        return await self._download(url, att.name, limit)

    async def _locate(self, att: Attachment) -> tuple[str, bytes | None]:
        """Where an attachment's bytes are: a URL, or the bytes themselves (base64 from the API)."""
        src = att.source
        if src.startswith(("http://", "https://")):
            return src, None
        scheme, _, rest = src.partition(":")
        try:
            if scheme == "groupfile":
                group, busid, file_id = rest.split(":", 2)
                params: dict[str, Any] = {"group_id": int(group), "file_id": file_id}
                if busid.isdigit():
                    params["busid"] = int(busid)
                data = await self._call("get_group_file_url", params)
            elif scheme == "image":
                data = await self._call("get_image", {"file": rest})
            else:
                data = await self._call("get_file", {"file_id": rest, "file": rest})
        except (ActionFailed, DeliveryError) as exc:
            raise DeliveryError(f"cannot fetch {att.name}: {exc}") from exc
        if isinstance(data, dict) and data.get("base64"):
            try:
                return "", base64.b64decode(str(data["base64"]))
            except ValueError as exc:
                raise DeliveryError(f"cannot fetch {att.name}: broken base64") from exc
        url = str(data.get("url") or "") if isinstance(data, dict) else ""
        if not url.startswith(("http://", "https://")):
            raise DeliveryError(f"cannot fetch {att.name}: the implementation gave no URL for it")
        return url, None

    async def _download(self, url: str, name: str, limit: int) -> bytes:
        http = self._http
        if http is None:
            raise DeliveryError("the OneBot adapter is not running")
        try:
            async with http.get(url) as resp:
                if resp.status != 200:
                    raise DeliveryError(f"cannot fetch {name}: HTTP {resp.status}")
                if resp.content_length and resp.content_length > limit:
                    raise DeliveryError(f"{name} is {resp.content_length} bytes, over the {limit}-byte limit")
                data = await resp.content.read(limit + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"cannot fetch {name}: {exc}") from exc
        if len(data) > limit:
            raise DeliveryError(f"{name} is over the {limit}-byte limit")
        return data


def create_adapter(cfg: OneBotSettings, env: AdapterEnv) -> OneBotAdapter:
    """The factory of the ``onebot`` plugin."""
    return OneBotAdapter(cfg, env)


__all__ = ["OneBotAdapter", "create_adapter"]
