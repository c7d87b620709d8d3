"""A fake Telegram Bot API server speaking the real HTTP protocol on 127.0.0.1.

python-telegram-bot is pointed at it through ``base_url=http://127.0.0.1:<port>/bot`` and
``base_file_url=http://127.0.0.1:<port>/file/bot``; it is driven unmodified. Requests arrive at
``/bot<token>/<method>`` as JSON, url-encoded or multipart bodies (every value JSON-encoded except plain
strings, as the real server accepts them); answers are ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": ..., "description": ..., "parameters": {...}}``, with Telegram's wording.

What it models: ``getUpdates`` offset semantics (an offset confirms every update below it, forever) and long
polling (waits up to ``timeout`` seconds; a newer ``getUpdates`` terminates a waiting one with 409, like the
real server), webhook delivery with the secret header and redelivery until 200, message length in UTF-16
units, MarkdownV2 reserved characters, chats upgraded to supergroups, files, polls, flood errors injected by
tests. Tests inject updates with ``message(...)`` and read what the bot did from ``sent`` and ``calls``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.config import TelegramAdapterSettings, WebhookSettings
from adapters.telegram.flow import Pacing
from adapters.telegram.text import utf16_len
from bot.ports import AdapterEnv, CommandInfo, KeyValueStore
from bot.testing.inbox import MemoryKeyValueStore
from tests.fakes import RecordingInbox

TEXT_FIELDS = {"text", "caption", "question", "parse_mode", "file_id", "url", "secret_token", "action", "description"}
MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


@dataclass
class Failure:
    method: str
    code: int
    description: str
    parameters: dict[str, Any] | None
    times: int


@dataclass
class FakeChat:
    id: int
    type: str  # private | group | supergroup | channel
    title: str = ""
    username: str = ""
    is_forum: bool = False
    migrated_to: int | None = None
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            d["first_name"] = self.title or "User"
        else:
            d["title"] = self.title or f"Chat {self.id}"
        if self.username:
            d["username"] = self.username
        if self.is_forum:
            d["is_forum"] = True
        return d


class FakeTelegram:
    """One fake bot account. ``await start()``, then use ``base_url`` / ``base_file_url``."""

    def __init__(
        self, token: str = "123456:TEST-fake-token", *, bot_id: int = 777000, username: str = "pai_test_bot",
        privacy: bool = False,
    ) -> None:
        self.token = token
        self.bot_user = {"id": bot_id, "is_bot": True, "first_name": "Pai", "username": username}
        self.privacy = privacy
        self.chats: dict[int, FakeChat] = {}
        self.updates: list[dict[str, Any]] = []  # not yet confirmed
        self.confirmed_offset = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []  # every message the bot created, in order
        self.edits: list[dict[str, Any]] = []
        self.deletions: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.files: dict[str, tuple[str, bytes]] = {}
        self.webhook: dict[str, Any] = {}
        self.admins: set[tuple[int, int]] = set()
        self.failures: list[Failure] = []
        self._update_ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._poll_generation = 0
        self._runner: web.AppRunner | None = None
        self._hook_task: asyncio.Task[None] | None = None
        # Called after a method succeeded and before the answer is written (``await hook(method, params,
        # result)``): lets a test kill the bot while Telegram has done the work but the bot has no answer.
        self.before_answer: Callable[[str, dict[str, Any], Any], Any] | None = None
        self.port = 0

    # ----------------------------------------------------------------- lifecycle

    async def start(self, port: int = 0) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._hook_task is not None:
            self._hook_task.cancel()
            await asyncio.gather(self._hook_task, return_exceptions=True)
        async with self._changed:
            self._poll_generation += 1
            self._changed.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ----------------------------------------------------------------- test controls

    def chat(self, chat_id: int, type: str = "supergroup", **kw: Any) -> FakeChat:  # noqa: A002
        if chat_id not in self.chats:
            self.chats[chat_id] = FakeChat(chat_id, type, **kw)
        return self.chats[chat_id]

    @staticmethod
    def user(user_id: int, first_name: str = "", username: str = "", is_bot: bool = False) -> dict[str, Any]:
        u: dict[str, Any] = {"id": user_id, "is_bot": is_bot, "first_name": first_name or f"User{user_id}"}
        if username:
            u["username"] = username
        return u

    def fail(self, method: str, code: int, description: str, *, times: int = 1, **parameters: Any) -> None:
        """Answer the next ``times`` calls of ``method`` with this error (e.g. 429 with ``retry_after=1``)."""
        self.failures.append(Failure(method, code, description, parameters or None, times))

    def flood(self, method: str = "sendMessage", retry_after: int = 1, times: int = 1) -> None:
        self.fail(method, 429, f"Too Many Requests: retry after {retry_after}", times=times, retry_after=retry_after)

    def add_file(self, file_id: str, data: bytes, path: str = "") -> None:
        self.files[file_id] = (path or f"documents/{file_id}.bin", data)

    async def push(self, kind: str, payload: dict[str, Any]) -> int:
        """Queue a raw update (``kind`` is its field: message, edited_message, ...); returns its update_id."""
        uid = next(self._update_ids)
        async with self._changed:
            self.updates.append({"update_id": uid, kind: payload})
            self._changed.notify_all()
        return uid

    async def push_raw(self, update: dict[str, Any]) -> int:
        uid = next(self._update_ids)
        async with self._changed:
            self.updates.append({**update, "update_id": uid})
            self._changed.notify_all()
        return uid

    async def message(
        self, chat_id: int, user: dict[str, Any], text: str = "", *, kind: str = "message", **extra: Any
    ) -> dict[str, Any]:
        """A member writes ``text`` in a chat (created as a supergroup if unknown). Returns the message."""
        chat = self.chat(chat_id)
        msg: dict[str, Any] = {
            "message_id": next(self._msg_ids), "from": user, "chat": chat.as_dict(), "date": int(time.time()),
        }
        if text:
            msg["text"] = text
        msg.update(extra)
        chat.messages[msg["message_id"]] = msg
        await self.push(kind, msg)
        return msg

    def texts_to(self, chat_id: int) -> list[str]:
        return [m.get("text", "") for m in self.sent if m["chat"]["id"] == chat_id and "text" in m]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``predicate()`` holds (re-checked whenever the bot calls the API)."""

        async def loop() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(loop(), timeout)

    # ----------------------------------------------------------------- HTTP plumbing

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json":
            params.update(await request.json())
            return params
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "data": value.file.read()}
                elif key in TEXT_FIELDS:
                    params[key] = value
                else:
                    try:
                        params[key] = json.loads(value)
                    except ValueError:
                        params[key] = value
        return params

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        handler = getattr(self, "_m_" + method, None)
        async with self._changed:
            self.calls.append((method, params))
            self._changed.notify_all()
        try:
            if handler is None:
                raise ApiError(404, "Not Found")
            failure = next((f for f in self.failures if f.method == method and f.times > 0), None)
            if failure is not None:
                failure.times -= 1
                raise ApiError(failure.code, failure.description, failure.parameters)
            result = await handler(params)
        except ApiError as exc:
            body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
            return web.json_response(body, status=exc.code)
        async with self._changed:
            self._changed.notify_all()
        if self.before_answer is not None:
            await self.before_answer(method, params, result)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        for file_path, data in self.files.values():
            if file_path == path:
                return web.Response(body=data)
        return web.Response(status=404)

    # ----------------------------------------------------------------- helpers for methods

    def _target(self, params: dict[str, Any]) -> FakeChat:
        try:
            chat = self.chats[int(params["chat_id"])]
        except (KeyError, ValueError, TypeError) as exc:
            raise ApiError(400, "Bad Request: chat not found") from exc
        if chat.migrated_to is not None:
            raise ApiError(
                400, "Bad Request: group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": chat.migrated_to}
            )
        return chat

    def _new_message(self, chat: FakeChat, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": next(self._msg_ids), "from": self.bot_user, "chat": chat.as_dict(), "date": int(time.time()),
            **content,
        }
        thread = params.get("message_thread_id")
        if thread is not None:
            if chat.is_forum and int(thread) not in chat.messages and int(thread) != 1:
                raise ApiError(400, "Bad Request: message thread not found")
            msg["message_thread_id"] = int(thread)
            msg["is_topic_message"] = chat.is_forum
        reply = params.get("reply_parameters")
        if reply:
            target = chat.messages.get(int(reply["message_id"]))
            if target is not None:
                msg["reply_to_message"] = {k: v for k, v in target.items() if k != "reply_to_message"}
            elif not reply.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
        chat.messages[msg["message_id"]] = msg
        self.sent.append({**msg, "_params": params})
        return msg

    @staticmethod
    def _check_text(text: Any, parse_mode: Any, limit: int = 4096) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > limit:
            raise ApiError(400, "Bad Request: message is too long")
        if parse_mode == "MarkdownV2":
            escaped = False
            for ch in text:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch in MDV2_RESERVED and ch not in "*_`":
                    raise ApiError(
                        400,
                        f"Bad Request: can't parse entities: Character '{ch}' is reserved and must be escaped "
                        "with the preceding '\\'",
                    )

    # ----------------------------------------------------------------- Bot API methods

    async def _m_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": not self.privacy,
                "supports_inline_queries": False}

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                                "to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        async with self._changed:
            if offset > 0:
                self.confirmed_offset = max(self.confirmed_offset, offset)
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self._poll_generation += 1
            me = self._poll_generation
            self._changed.notify_all()
            deadline = time.monotonic() + timeout
            while not self.updates and time.monotonic() < deadline and me == self._poll_generation:
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            if me != self._poll_generation and not self.updates:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only one "
                                    "bot instance is running")
            return self.updates[:limit]

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {}
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = dict(params)
        if self._hook_task is None or self._hook_task.done():
            self._hook_task = asyncio.create_task(self._deliver_webhooks(), name="fake-telegram-webhook")
        return True

    async def _deliver_webhooks(self) -> None:
        async with aiohttp.ClientSession() as http:
            while self.webhook.get("url"):
                async with self._changed:
                    await self._changed.wait_for(lambda: bool(self.updates) or not self.webhook.get("url"))
                    if not self.webhook.get("url"):
                        return
                    update = self.updates[0]
                headers = {}
                if self.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
                try:
                    async with http.post(self.webhook["url"], json=update, headers=headers) as resp:
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                async with self._changed:
                    self.calls.append(("webhook", {"update_id": update["update_id"], "ok": ok}))
                    if ok and self.updates and self.updates[0] is update:
                        self.updates.pop(0)
                        self.confirmed_offset = update["update_id"] + 1
                    self._changed.notify_all()
                if not ok:
                    await asyncio.sleep(0.2)

    async def _m_setMyCommands(self, params: dict[str, Any]) -> bool:
        self.commands = list(params.get("commands") or [])
        return True

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._target(params)
        self._check_text(params.get("text"), params.get("parse_mode"))
        content: dict[str, Any] = {"text": params["text"]}
        if params.get("link_preview_options"):
            content["link_preview_options"] = params["link_preview_options"]
        return self._new_message(chat, params, **content)

    async def _m_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._target(params)
        msg = chat.messages.get(int(params.get("message_id", 0)))
        if msg is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if msg["from"]["id"] != self.bot_user["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        self._check_text(params.get("text"), params.get("parse_mode"))
        if msg.get("text") == params["text"]:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        msg["text"] = params["text"]
        msg["edit_date"] = int(time.time())
        self.edits.append({"chat_id": chat.id, "message_id": msg["message_id"], "text": params["text"]})
        return msg

    async def _m_deleteMessage(self, params: dict[str, Any]) -> bool:
        chat = self._target(params)
        msg = chat.messages.get(int(params.get("message_id", 0)))
        if msg is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        if msg["from"]["id"] != self.bot_user["id"] and (chat.id, self.bot_user["id"]) not in self.admins:
            raise ApiError(400, "Bad Request: message can't be deleted")
        del chat.messages[msg["message_id"]]
        self.deletions.append({"chat_id": chat.id, "message_id": msg["message_id"]})
        return True

    async def _m_sendChatAction(self, params: dict[str, Any]) -> bool:
        self._target(params)
        self.actions.append(params)
        return True

    async def _upload(self, params: dict[str, Any], field_name: str) -> tuple[str, bytes]:
        value = params.get(field_name)
        if isinstance(value, dict) and "data" in value:
            return value["filename"] or field_name, value["data"]
        raise ApiError(400, f"Bad Request: there is no {field_name} in the request")

    async def _m_sendDocument(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._target(params)
        name, data = await self._upload(params, "document")
        fid = f"doc{len(self.files) + 1}"
        self.add_file(fid, data)
        doc = {"file_id": fid, "file_unique_id": "u" + fid, "file_name": name, "file_size": len(data)}
        return self._new_message(chat, params, document=doc)

    async def _m_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._target(params)
        _, data = await self._upload(params, "photo")
        fid = f"photo{len(self.files) + 1}"
        self.add_file(fid, data)
        size = {"file_id": fid, "file_unique_id": "u" + fid, "width": 1, "height": 1, "file_size": len(data)}
        return self._new_message(chat, params, photo=[size])

    async def _m_sendPoll(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._target(params)
        options = [o["text"] if isinstance(o, dict) else str(o) for o in params.get("options") or []]
        if not 2 <= len(options) <= 12:
            raise ApiError(400, "Bad Request: poll must have at least 2 option")
        poll = {
            "id": f"poll{len(self.sent) + 1}", "question": params.get("question", ""),
            "options": [{"text": o, "voter_count": 0, "persistent_id": f"o{i}"} for i, o in enumerate(options)], "total_voter_count": 0,
            "is_closed": False, "is_anonymous": bool(params.get("is_anonymous", True)), "type": "regular",
            "allows_multiple_answers": bool(params.get("allows_multiple_answers", False)),
            "allows_revoting": True, "members_only": False,
        }
        return self._new_message(chat, params, poll=poll)

    async def _m_getFile(self, params: dict[str, Any]) -> dict[str, Any]:
        fid = str(params.get("file_id", ""))
        if fid not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[fid]
        if len(data) > 20 * 1024 * 1024:
            raise ApiError(400, "Bad Request: file is too big")
        return {"file_id": fid, "file_unique_id": "u" + fid, "file_size": len(data), "file_path": path}

    async def _m_getChatMember(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._target(params)
        uid = int(params["user_id"])
        status = "administrator" if (chat.id, uid) in self.admins else "member"
        member: dict[str, Any] = {"status": status, "user": self.user(uid)}
        if status == "administrator":
            member.update({k: False for k in (
                "can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
                "can_restrict_members", "can_promote_members", "can_change_info", "can_invite_users",
                "can_post_stories", "can_edit_stories", "can_delete_stories")})
        return member


class RecordingSink(RecordingInbox):
    """An in-memory ``IntakeSink``: events deduplicated by ``event_id``, cursors committed with them.

    ``fail_next`` makes the next submits raise (an inbox that cannot commit), to prove nothing is acknowledged
    before a commit."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0
        self.changed = asyncio.Event()

    async def submit(self, events: Any, *, cursor_key: str | None = None, cursor: str | None = None) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("disk full")
        new = self.commit(events, cursor_key, cursor)
        self.changed.set()
        return new

    @property
    def messages(self) -> list[Any]:
        return self.in_order()

    async def wait_for(self, n: int, timeout: float = 15.0) -> list[Any]:
        async def loop() -> None:
            while len(self.order) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)
        return self.messages

# --------------------------------------------------------------------------- adapter wiring for tests

NO_PACING = Pacing(chat_interval_s=0.0, group_per_minute=0, global_per_second=0)
COMMANDS = (CommandInfo("help", "What I can do"), CommandInfo("remind", "Set a reminder"))


class RecordingClock:
    """The real clock, remembering every sleep it was asked for (to prove waits happened, not how long)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(seconds)


# The adapter's key-value store lives with its data directory, as the app's does (in paibot.db): an adapter
# made again on the same directory (a restart) finds what the first one stored.
_STORES: dict[Path, MemoryKeyValueStore] = {}


def make_adapter(
    fake: FakeTelegram,
    data_dir: Path,
    *,
    clock: RecordingClock | None = None,
    pacing: Pacing = NO_PACING,
    webhook: WebhookSettings | None = None,
    token: str | None = None,
    max_attachment_bytes: int = 1024 * 1024,
    retry_base_s: float = 0.05,
    store: KeyValueStore | None = None,
) -> TelegramAdapter:
    settings = TelegramAdapterSettings(
        enabled=True,
        token=token or fake.token,
        base_url=fake.base_url,
        base_file_url=fake.base_file_url,
        poll_timeout_s=5,
        webhook=webhook or WebhookSettings(),
    )
    env = AdapterEnv(bot_name="Pai", data_dir=data_dir, commands=COMMANDS, max_attachment_bytes=max_attachment_bytes,
                     store=store or _STORES.setdefault(Path(data_dir), MemoryKeyValueStore()))  # fmt: skip
    return TelegramAdapter(
        settings, env, clock=clock or RecordingClock(), pacing=pacing, retry_base_s=retry_base_s
    )
