"""The WeCom AI bot adapter (企业微信智能机器人, API mode): the AI member where WeChat-family groups meet.

WeCom calls paibot's callback URL; every callback is signed and AES-encrypted (``adapters.wecom.crypto``):

    GET  ?msg_signature&timestamp&nonce&echostr   URL verification: answer the decrypted echostr
    POST ?msg_signature&timestamp&nonce  {"encrypt"}
         a message (text, mixed, image, voice, file; quotes)   commit it to the inbox, open its answer slot,
                                                               answer with an empty, unfinished stream
         a stream refresh (msgtype "stream")                   answer with the slot's content so far
         an event (enter_chat, ...)                            answer nothing

Answers (``adapters.wecom.streams``): ``send`` of a reply fills the slot of the message it answers; an
``Outgoing.streaming`` send keeps it open for ``edit``s until ``finish_edit`` (``bot.ports.StreamFinisher``),
so the member sees the answer as it is written. What cannot go into a slot any more (after WeCom stopped
refreshing, six minutes after the message; a second message for the same question) goes to the message's
``response_url`` (a markdown message, once, within an hour). WeCom offers no other way to speak: a message
not answering one addressed to the bot (a reminder in a group nobody asked anything lately) cannot be
delivered, and ``send`` says so (``DeliveryError``).

WeCom delivers only messages that @mention the bot and direct messages, so the bot knows nothing of a
group's other talk. The slot's ``response_url`` is kept with the event in the inbox's cursor table, so an
answer the core sends after a restart still finds its way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from adapters.wecom.config import WeComSettings
from adapters.wecom.convert import PLATFORM, MalformedCallback, to_event
from adapters.wecom.crypto import CryptoError, WeComCrypto
from adapters.wecom.streams import Slot, StreamBoard, stream_id_for
from bot.errors import AdapterConfigError, DeliveryError, DeliveryUncertain, PlatformUnavailable
from bot.events import Attachment, ChatRef, Outgoing, SentRef
from bot.ports import AdapterEnv, Capabilities, Clock, Erasure, IntakeSink

log = logging.getLogger("paibot.wecom")

# + stream id -> {"msgid", "chat", "title", "response_url", "at"}: in the adapter's key-value store, expiring
# with the response_url (older versions kept it as an intake cursor, never pruned; still read back).
SLOT_KEY = "wecom:slot:"
MAX_BODY = 1024 * 1024


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _no_mass_ping(text: str) -> str:
    """WeCom markdown mentions are ``<@userid>`` (``<@all>`` reaches everyone): model text never mentions."""
    return text.replace("<@", "<\u200b@")


class WeComAdapter:
    """``ChatAdapter`` (plus ``StreamFinisher``, ``AttachmentFetcher`` and ``ContentEraser``) for the WeCom AI
    bot."""

    name = PLATFORM
    capabilities = Capabilities(max_text_length=6000, edit=True, links=True, unprompted=False)

    def __init__(self, settings: WeComSettings, env: AdapterEnv, *, clock: Clock | None = None) -> None:
        self._s = settings
        self._env = env
        self._clock = clock or _SystemClock()
        self._crypto = WeComCrypto(settings.token, settings.encoding_aes_key)
        self._board = StreamBoard(settings.stream_window_s, settings.response_url_ttl_s)
        self._sink: IntakeSink | None = None
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._refusals = 0
        self.port = settings.port

    @property
    def where(self) -> str:
        return f"http://{self._s.listen}:{self.port}{self._s.path}"

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, sink: IntakeSink) -> None:
        if self._runner is not None:
            raise RuntimeError("the WeCom adapter is already started")
        self._sink = sink
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get(self._s.path, self._verify_url)
        app.router.add_post(self._s.path, self._callback)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._s.listen, self._s.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise AdapterConfigError(
                f"cannot listen for WeCom callbacks on {self._s.listen}:{self._s.port} ({exc}); pick a free "
                "adapters.wecom.port"
            ) from exc
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                self.port = int(addr[1])
                break
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=10))
        log.info(
            "wecom: receiving the AI bot's callbacks on %s (publish it over HTTPS as the bot's URL)",
            self.where,
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    # ----------------------------------------------------------------- callbacks

    def _refuse(self, request: web.Request, why: str) -> web.Response:
        self._refusals += 1
        if self._refusals == 1:
            log.error(
                "wecom: refused a callback from %s: %s. Make adapters.wecom.token and encoding_aes_key equal "
                "to the Token and EncodingAESKey of the AI bot's API settings", request.remote, why,
            )  # fmt: skip
        return web.Response(status=403)

    async def _verify_url(self, request: web.Request) -> web.Response:
        q = request.query
        echostr = q.get("echostr", "")
        try:
            self._crypto.verify(
                q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""), echostr
            )
            plain = self._crypto.decrypt(echostr)
        except CryptoError as exc:
            return self._refuse(request, str(exc))
        self._refusals = 0
        log.info("wecom: the callback URL was verified")
        return web.Response(text=plain)

    async def _callback(self, request: web.Request) -> web.Response:
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        try:
            body = json.loads(await request.read())
            encrypted = str(body["encrypt"]) if isinstance(body, dict) else ""
            self._crypto.verify(q.get("msg_signature", ""), timestamp, nonce, encrypted)
            payload = json.loads(self._crypto.decrypt(encrypted))
            if not isinstance(payload, dict):
                raise CryptoError("the message is not a JSON object")
        except (CryptoError, KeyError, ValueError) as exc:
            return self._refuse(request, str(exc))
        self._refusals = 0
        if self._s.bot_id and payload.get("aibotid") not in (None, self._s.bot_id):
            return self._refuse(request, "it is for another AI bot (adapters.wecom.bot_id)")
        kind = payload.get("msgtype")
        if kind == "stream":
            sid = str((payload.get("stream") or {}).get("id") or "")
            await self._restore(sid)
            content, finish = self._board.refresh(sid, self._now())
            return self._sealed(
                {"msgtype": "stream", "stream": {"id": sid, "finish": finish, "content": content}}
            )
        try:
            slot = await self._intake(payload)
        except MalformedCallback as exc:
            log.warning("wecom: skipping a malformed callback: %s", exc)
            return web.Response(text="")
        except Exception:  # noqa: BLE001 - not committed: WeCom calls again with the same msgid
            log.exception("wecom: could not commit a message")
            return web.Response(status=500)
        if slot is None:
            return web.Response(text="")  # events and kinds we do not read: an empty answer
        content, finish = slot.content, slot.finished
        return self._sealed({"msgtype": "stream", "stream": {"id": slot.stream_id, "finish": finish,
                                                             "content": content}})  # fmt: skip

    def _sealed(self, reply: dict[str, Any]) -> web.Response:
        stamp = str(int(time.time()))
        packet = self._crypto.sealed(json.dumps(reply, ensure_ascii=False), stamp, secrets.token_hex(8))
        return web.json_response(packet)

    async def _intake(self, payload: dict[str, Any]) -> Slot | None:
        assert self._sink is not None
        event = to_event(payload, self._clock.now(), self._env.bot_name, self._s.mention_name)
        if event is None:
            return None
        slot = self._board.by_msg(event.id)
        if slot is not None:
            return slot  # a retried callback: committed already
        url = str(payload.get("response_url") or "")
        record = json.dumps({"msgid": event.id, "chat": event.chat.chat_id, "title": event.chat.title,
                             "response_url": url, "at": self._now()})  # fmt: skip
        key = SLOT_KEY + stream_id_for(event.id)
        if self._env.store is not None:
            # Written before the event is committed: a crash in between leaves a slot that expires unused,
            # and WeCom's retried callback writes it again.
            await self._env.store.put(key, record, ttl_s=self._s.response_url_ttl_s + 60)
            await self._sink.submit([event])
        else:
            await self._sink.submit([event], cursor_key=key, cursor=record)
        return self._board.open(event.id, event.chat, url, self._now(), event.author.user_id)

    async def _restore(self, stream_id: str) -> Slot | None:
        """The answer slot of a stream, also after a restart (its record is in the inbox's cursor table)."""
        slot = self._board.by_stream(stream_id)
        if slot is not None or self._sink is None:
            return slot
        raw = await self._env.store.get(SLOT_KEY + stream_id) if self._env.store is not None else None
        if raw is None:
            raw = await self._sink.cursor(SLOT_KEY + stream_id)
        try:
            rec = json.loads(raw) if raw else None
            if not isinstance(rec, dict):
                return None
            chat = ChatRef(PLATFORM, str(rec["chat"]), str(rec.get("title") or ""))
            return self._board.open(
                str(rec["msgid"]), chat, str(rec.get("response_url") or ""), float(rec["at"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    # ----------------------------------------------------------------- forgetting

    async def passages(self, erasure: Erasure) -> list[str]:
        return []  # the slots hold the bot's answers, not members' words of their own

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """The answers still held for WeCom's refreshes that the erasure reaches (``StreamBoard.forget``)."""
        n = self._board.forget(erasure)
        return {"cached copies": n} if n else {}

    # ----------------------------------------------------------------- answering

    async def send(self, out: Outgoing) -> SentRef:
        text = _no_mass_ping(out.text.strip())
        if not text:
            raise DeliveryError("nothing to send: WeCom answers carry text only")
        now = self._now()
        slot = await self._restore(stream_id_for(out.reply_to)) if out.reply_to else None
        if slot is not None and slot.chat.chat_id != out.chat.chat_id:
            slot = None
        if slot is not None and not slot.content and not self._board.late(slot, now):
            self._board.put(slot, text, final=not out.streaming)
            return SentRef(out.chat, slot.stream_id, sent_at=self._clock.now())
        target = slot
        if target is None or target.response_used or not target.response_url:
            target = self._board.latest_with_url(out.chat, now)
        if target is None:
            raise DeliveryError(
                "WeCom lets the AI bot speak only in answer to a message addressed to it, within an hour; "
                f"nothing in {out.chat.key} can take this message"
            )
        await self._post_response(target, text)
        return SentRef(out.chat, f"{target.msgid}:response", sent_at=self._clock.now())

    async def _post_response(self, slot: Slot, text: str) -> None:
        http = self._http
        if http is None:
            raise PlatformUnavailable("the WeCom adapter is not running")
        slot.response_used = True  # once only, whatever happens next
        body = {"msgtype": "markdown", "markdown": {"content": text}}
        try:
            async with http.post(slot.response_url, json=body) as resp:
                answer = await resp.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:
            slot.response_used = False  # it never left: may be tried again
            raise PlatformUnavailable(f"cannot reach WeCom's response_url ({exc})") from exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DeliveryUncertain(f"WeCom did not confirm the answer ({exc})") from exc
        if not isinstance(answer, dict) or answer.get("errcode", 0) != 0:
            raise DeliveryError(f"WeCom refused the answer: {answer}")

    async def _edit(self, ref: SentRef, text: str, final: bool) -> None:
        slot = await self._restore(ref.message_id)
        if slot is None or self._board.late(slot, self._now()):
            raise DeliveryError("this WeCom answer can no longer change (WeCom stopped refreshing it)")
        self._board.put(slot, _no_mass_ping(text.strip()), final)

    async def edit(self, ref: SentRef, text: str) -> None:
        await self._edit(ref, text, final=False)

    async def finish_edit(self, ref: SentRef, text: str) -> None:
        await self._edit(ref, text, final=True)

    async def typing(self, chat: ChatRef) -> None:
        return None

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        """Download an image or file from its callback URL and decrypt it (WeCom encrypts them with the
        bot's EncodingAESKey, or with the ``aeskey`` the callback names for the file)."""
        limit = min(max_bytes, self._env.max_attachment_bytes)
        http = self._http
        if http is None:
            raise DeliveryError("the WeCom adapter is not running")
        url, _, key = att.source.partition("#aeskey=")
        try:
            crypto = WeComCrypto(self._s.token, key.rstrip("=")[:43]) if key else self._crypto
        except CryptoError as exc:
            raise DeliveryError(f"cannot decrypt {att.name}: {exc}") from exc
        try:
            async with http.get(url) as resp:
                if resp.status != 200:
                    raise DeliveryError(f"cannot fetch {att.name}: HTTP {resp.status}")
                data = await resp.content.read(limit + 64)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"cannot fetch {att.name}: {exc}") from exc
        if len(data) > limit + 32:
            raise DeliveryError(f"{att.name} is over the {limit}-byte limit")
        try:
            plain = await asyncio.to_thread(crypto.decrypt_media, data)
        except CryptoError as exc:
            raise DeliveryError(f"cannot decrypt {att.name}: {exc}") from exc
        if len(plain) > limit:
            raise DeliveryError(f"{att.name} is over the {limit}-byte limit")
        return plain


def create_adapter(cfg: WeComSettings, env: AdapterEnv) -> WeComAdapter:
    """The factory of the ``wecom`` plugin."""
    return WeComAdapter(cfg, env)
