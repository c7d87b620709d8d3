"""A fake WeCom (企业微信) calling an AI bot's callback URL the way the real one does, on 127.0.0.1.

Written from WeCom's published AI bot documents (接收消息, 被动回复消息, 回调和回复的加解密方案,
主动回复消息):

* URL verification: ``GET <url>?msg_signature&timestamp&nonce&echostr``; the answer must be the decrypted
  echostr, nothing else.
* Callbacks: ``POST <url>?msg_signature&timestamp&nonce`` with ``{"encrypt": ...}``; the plaintext JSON is
  framed as ``random(16) | length(4, big-endian) | message | receive id ("")``, PKCS#7-padded to 32 bytes,
  AES-256-CBC with IV = key[:16], base64; the signature is SHA-1 over the sorted token, timestamp, nonce and
  ciphertext. The fake checks the bot's encrypted answers the same way (``msgsignature`` included).
* Streams: when the answer to a message is a stream, the fake calls back with ``msgtype: stream`` every
  ``refresh_s`` and records what each answer showed (``Conversation.shown``), until ``finish`` or the
  window (six minutes in WeCom; ``window_s`` here).
* ``response_url``: each message carries one, served by the fake; it takes one markdown message, once.

The crypto here is written separately from ``adapters.wecom.crypto`` (same published scheme, own code), so
a mistake on one side does not cancel out on the other.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AIBOTID = "aib_fake_0001"


def new_aes_key() -> str:
    """A random EncodingAESKey (43 characters), as the admin console generates one."""
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass
class Conversation:
    """One message sent to the bot and everything WeCom saw of its answer."""

    msgid: str
    payload: dict[str, Any]
    first: dict[str, Any] | None = None  # the decrypted answer to the message callback
    shown: list[str] = field(default_factory=list)  # content of each stream refresh answer, in order
    finished: bool = False
    responses: list[dict[str, Any]] = field(default_factory=list)  # what came through response_url
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FakeWeCom:
    def __init__(self, token: str = "wecom-token", aes: str | None = None, *, refresh_s: float = 0.05,
                 window_s: float = 30.0) -> None:  # fmt: skip
        self.token = token
        self.aes = aes or new_aes_key()
        self._key = base64.b64decode(self.aes + "=")
        self.refresh_s = refresh_s
        self.window_s = window_s
        self.callback_url = ""
        self.conversations: dict[str, Conversation] = {}
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._base = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self.files: dict[str, bytes] = {}
        self.statuses: list[int] = []

    # ----------------------------------------------------------------- crypto, written from the spec

    def _aes(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def seal(self, text: str) -> str:
        msg = text.encode()
        framed = os.urandom(16) + struct.pack(">I", len(msg)) + msg + b""
        pad = 32 - len(framed) % 32
        enc = self._aes().encryptor()
        return base64.b64encode(enc.update(framed + bytes([pad]) * pad) + enc.finalize()).decode()

    def open_(self, cipher_text: str) -> str:
        dec = self._aes().decryptor()
        plain = dec.update(base64.b64decode(cipher_text)) + dec.finalize()
        plain = plain[: -plain[-1]]
        (n,) = struct.unpack(">I", plain[16:20])
        assert plain[20 + n :] == b"", "the receive id of an AI bot is empty"
        return plain[20 : 20 + n].decode()

    def encrypt_media(self, data: bytes) -> bytes:
        pad = 32 - len(data) % 32
        enc = self._aes().encryptor()
        return enc.update(data + bytes([pad]) * pad) + enc.finalize()

    def sign(self, timestamp: str, nonce: str, cipher_text: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, cipher_text])).encode()).hexdigest()

    # ----------------------------------------------------------------- calling the bot

    async def start(self, callback_url: str) -> FakeWeCom:
        self.callback_url = callback_url
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/cgi-bin/aibot/response", self._response_url)
        app.router.add_get("/media/{name}", self._media)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._base = "http://127.0.0.1:%d" % self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def verify_url(self, *, token: str | None = None) -> tuple[int, str]:
        echo = "echo-" + os.urandom(4).hex()
        cipher_text = self.seal(echo)
        ts, nonce = str(int(time.time())), os.urandom(4).hex()
        sig = FakeWeCom(token or self.token, self.aes).sign(ts, nonce, cipher_text)
        assert self._http is not None
        params = {"msg_signature": sig, "timestamp": ts, "nonce": nonce, "echostr": cipher_text}
        async with self._http.get(self.callback_url, params=params) as resp:
            return resp.status, (await resp.text()) if resp.status == 200 else echo

    async def _post(
        self, plain: dict[str, Any], *, token: str | None = None
    ) -> tuple[int, dict[str, Any] | None]:
        cipher_text = self.seal(json.dumps(plain, ensure_ascii=False))
        ts, nonce = str(int(time.time())), os.urandom(4).hex()
        sig = FakeWeCom(token or self.token, self.aes).sign(ts, nonce, cipher_text)
        assert self._http is not None
        query = {"msg_signature": sig, "timestamp": ts, "nonce": nonce}
        async with self._http.post(self.callback_url, params=query, json={"encrypt": cipher_text}) as resp:
            self.statuses.append(resp.status)
            text = await resp.text()
            if resp.status != 200 or not text.strip():
                return resp.status, None
            packet = json.loads(text)
        assert packet["msgsignature"] == self.sign(packet["timestamp"], packet["nonce"], packet["encrypt"]), (
            "the bot's answer is not signed like WeCom expects"
        )
        return resp.status, json.loads(self.open_(packet["encrypt"]))

    def message(
        self, text: str = "", *, chat: str = "", user: str = "zhangsan", kind: str = "text",
        body: dict[str, Any] | None = None, quote: dict[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A callback payload as WeCom builds it (``chat`` empty: a direct message)."""
        msgid = f"CAIQ{next(self._ids):06d}"
        p: dict[str, Any] = {
            "msgid": msgid, "aibotid": AIBOTID, "chattype": "group" if chat else "single",
            "from": {"userid": user},
            "response_url": f"{self._base}/cgi-bin/aibot/response?response_code={msgid}",
            "msgtype": kind, kind: body if body is not None else {"content": text},
        }  # fmt: skip
        if chat:
            p["chatid"] = chat
        if quote is not None:
            p["quote"] = quote
        return p

    async def send(self, payload: dict[str, Any], *, token: str | None = None) -> Conversation:
        """Deliver a message callback; when the bot answers with a stream, keep refreshing it."""
        conv = self.conversations.setdefault(payload["msgid"], Conversation(payload["msgid"], payload))
        status, first = await self._post(payload, token=token)
        conv.first = first
        if first is not None and first.get("msgtype") == "stream":
            task = asyncio.create_task(
                self._refresh(conv, first["stream"]["id"], payload), name="fake-wecom-refresh"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            conv.done.set()
        return conv

    async def _refresh(self, conv: Conversation, stream_id: str, payload: dict[str, Any]) -> None:
        began = time.monotonic()
        while time.monotonic() - began < self.window_s:
            await asyncio.sleep(self.refresh_s)  # WeCom's polling interval, not a test synchronisation
            refresh = {k: payload[k] for k in ("msgid", "aibotid", "chattype", "from") if k in payload}
            if "chatid" in payload:
                refresh["chatid"] = payload["chatid"]
            refresh.update({"msgtype": "stream", "stream": {"id": stream_id}})
            try:
                _, answer = await self._post(refresh)
            except aiohttp.ClientError:
                continue  # the bot is down for a moment: WeCom keeps asking
            if answer is None:
                continue
            stream = answer["stream"]
            assert stream["id"] == stream_id
            conv.shown.append(stream.get("content", ""))
            if stream.get("finish"):
                conv.finished = True
                break
        conv.done.set()

    async def refresh_once(self, conv: Conversation) -> str:
        """One more stream refresh of an answered message, as WeCom sends while a client shows it: what the
        bot shows now."""
        assert conv.first is not None and conv.first.get("msgtype") == "stream"
        keys = ("msgid", "aibotid", "chattype", "from", "chatid")
        refresh = {k: conv.payload[k] for k in keys if k in conv.payload}
        refresh.update({"msgtype": "stream", "stream": {"id": conv.first["stream"]["id"]}})
        _, answer = await self._post(refresh)
        assert answer is not None
        return str(answer["stream"].get("content", ""))

    async def _response_url(self, request: web.Request) -> web.Response:
        code = request.query.get("response_code", "")
        conv = self.conversations.get(code)
        if conv is None:
            return web.json_response({"errcode": 40001, "errmsg": "invalid response_code"})
        if conv.responses:
            return web.json_response({"errcode": 40002, "errmsg": "response_url already used"})
        conv.responses.append(await request.json())
        conv.done.set()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def media_url(self, name: str, data: bytes) -> str:
        self.files[name] = self.encrypt_media(data)
        return f"{self._base}/media/{name}"

    async def _media(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["name"])
        return web.Response(status=404) if data is None else web.Response(body=data)
