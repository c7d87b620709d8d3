"""The Telegram adapter: the AI member in Telegram groups, through python-telegram-bot (PTB).

Only PTB's ``Bot`` (the typed Bot API client) is used. Intake runs our own ``getUpdates`` loop (or a
webhook) that acknowledges an update only after the inbox committed it (``adapters.telegram.intake``);
conversion to core events lives in ``adapters.telegram.convert``, text rules in ``adapters.telegram.text``,
flood control in ``adapters.telegram.flow``.

Sending: plain text only (model output can never fail with "can't parse entities"), split at 4096 UTF-16
units, the first part quoting the triggering message, link previews off, one FIFO turn per chat so parts and
edits keep their order, Telegram's flood limits paced and ``retry_after`` honoured. When the core passes an
``idempotency_key``, the parts already delivered are recorded durably (through the inbox's cursor table), so
a send repeated after a crash does not post them twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, BotCommand, InputFile, LinkPreviewOptions, ReplyParameters
from telegram import Message as TgMessage
from telegram.constants import ChatAction, ChatMemberStatus
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from adapters.telegram.chats import ChatMap
from adapters.telegram.convert import BotIdentity, Migration
from adapters.telegram.records import SendRecords
from adapters.telegram.flow import Backoff, ChatPacer, Pacing, SystemClock
from adapters.telegram.intake import ALLOWED_UPDATES, TelegramIntake, retry_after_seconds
from adapters.telegram.text import (
    MESSAGE_LIMIT,
    POLL_OPTION_LIMIT,
    POLL_QUESTION_LIMIT,
    message_link,
    split_text,
    truncate,
)
from adapters.telegram.config import TelegramAdapterSettings
from bot.errors import (
    AdapterConfigError,
    CredentialsRejected,
    DeliveryError,
    DeliveryUncertain,
    PaibotError,
    PlatformUnavailable,
)
from bot.events import Attachment, ChatRef, Outgoing, PersonRef, SentRef
from bot.ports import AdapterEnv, Capabilities, Clock, CommandInfo, IntakeSink

log = logging.getLogger("paibot.telegram")

T = TypeVar("T")
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
MAX_FLOOD_WAITS = 5
MAX_FLOOD_WAIT_S = 600.0
MAX_NETWORK_RETRIES = 3
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what the Bot API takes from a bot (sendDocument)
PRIVACY_HINT = (
    "telegram: privacy mode is ON for @%s, so in groups it only sees commands, mentions and replies and its "
    "memory of each group stays partial. To fix it: open @BotFather, send /setprivacy, pick the bot, choose "
    "Disable; then remove the bot from each group and add it again (Telegram applies the change on re-join)."
)


def _url_host(url: str) -> str:
    """Scheme and host of a Bot API URL, for logs (the path holds the token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the Telegram Bot API"


def _command_list(commands: tuple[CommandInfo, ...]) -> list[BotCommand]:
    """Telegram accepts 1-32 chars of ``[a-z0-9_]`` per command and 1-256 chars of description."""
    out: list[BotCommand] = []
    for c in commands:
        name = c.name.lower().lstrip("/").replace("-", "_")
        if not name or len(name) > 32 or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name):
            log.warning("telegram: command %r cannot be registered (Telegram allows [a-z0-9_]{1,32})", c.name)
            continue
        out.append(BotCommand(name, truncate(c.description or name, 256)))
    return out[:100]


class TelegramAdapter:
    """``ChatAdapter`` (plus ``AttachmentFetcher`` and ``AdminChecker``) for Telegram."""

    name = "telegram"
    capabilities = Capabilities(
        # Not idempotent_sends: Telegram has no idempotent send, and a crash while a sendMessage is in flight
        # cannot tell whether it arrived (the durable part records only cover parts confirmed before).
        max_text_length=MESSAGE_LIMIT, edit=True, polls=True, files=True, threads=True, typing=True, links=True,
        max_file_bytes=MAX_UPLOAD_BYTES,
    )

    def __init__(
        self,
        settings: TelegramAdapterSettings,
        env: AdapterEnv,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        pacing: Pacing = Pacing(),
        retry_base_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._retry_base = retry_base_s
        self._env = env
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._pacer = ChatPacer(self._clock, pacing)
        self._bot: Bot | None = None
        self._sink: IntakeSink | None = None
        self._chats: ChatMap | None = None
        self._records = SendRecords(env.store)  # durable when the app gives a store
        self._me: BotIdentity | None = None
        self._intake: TelegramIntake | None = None
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._pending_edits: dict[tuple[int, str], str] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ----------------------------------------------------------------- lifecycle

    @property
    def me(self) -> BotIdentity:
        if self._me is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._me

    @property
    def intake(self) -> TelegramIntake | None:
        return self._intake

    def _make_bot(self) -> Bot:
        s = self._settings
        base_url = s.base_url or "https://api.telegram.org/bot"
        base_file_url = s.base_file_url
        if not base_file_url:
            base_file_url = (
                base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else "https://api.telegram.org/file/bot"
            )
        return Bot(
            s.token,
            base_url=base_url,
            base_file_url=base_file_url,
            request=HTTPXRequest(connection_pool_size=32, read_timeout=30.0, write_timeout=30.0, pool_timeout=10.0),
            get_updates_request=HTTPXRequest(connection_pool_size=1, read_timeout=10.0, connect_timeout=10.0),
        )

    def _where(self) -> str:
        return _url_host(self._settings.base_url or "https://api.telegram.org")

    def _start_error(self, exc: TelegramError) -> PaibotError:
        """What a failure while starting means to the supervisor (``bot.supervisor``): a rejected token
        stops the adapter, a refusal needs the operator, anything else is an outage to wait out."""
        where = self._where()
        if isinstance(exc, InvalidToken):  # 401, or 404 for a malformed token
            return CredentialsRejected(
                f"Telegram ({where}) rejected the bot token in adapters.telegram.token. Create a bot or copy "
                "its token with @BotFather (/newbot or /token), put it in the environment variable your "
                "config.yaml reads (e.g. TELEGRAM_BOT_TOKEN) and start again."
            )
        if isinstance(exc, RetryAfter):
            return PlatformUnavailable(f"the Telegram Bot API at {where} asks to wait ({exc})",
                                       retry_after=retry_after_seconds(exc))
        if isinstance(exc, (Forbidden, BadRequest, Conflict)):
            return AdapterConfigError(
                f"the Telegram Bot API at {where} refused the bot ({exc}); check adapters.telegram.base_url"
            )
        return PlatformUnavailable(f"cannot reach the Telegram Bot API at {where} ({exc})")

    async def start(self, sink: IntakeSink) -> None:
        """One connection attempt (see ``bot.supervisor`` for the contract): ``PlatformUnavailable`` when the
        Bot API cannot be reached, ``CredentialsRejected`` for a rejected token; a failed attempt leaves
        nothing open, so ``start`` may be called again."""
        if self._bot is not None:
            raise RuntimeError("the Telegram adapter is already started")
        # A fresh Bot per attempt: python-telegram-bot marks a Bot initialised before its getMe, so a Bot
        # whose getMe failed cannot be initialised again.
        bot = self._make_bot()
        try:
            await bot.initialize()  # opens the request pools, then getMe
        except InvalidToken as exc:
            await bot.shutdown()
            # PTB's own message repeats the token; chain the server's answer instead.
            raise self._start_error(exc) from exc.__cause__
        except TelegramError as exc:
            await bot.shutdown()
            raise self._start_error(exc) from exc
        except BaseException:
            await bot.shutdown()
            raise
        user = bot.bot
        self._me = BotIdentity(user.id, user.username or "", user.first_name or self._env.bot_name)
        self._bot, self._sink, self._chats = bot, sink, ChatMap(sink)
        log.info("telegram: connected to %s as @%s (id %s)", self._where(), self._me.username, self._me.id)
        if not user.can_read_all_group_messages:
            log.warning(PRIVACY_HINT, self._me.username)
        await self._register_commands()
        self._intake = TelegramIntake(
            bot, self._me, sink, self._chats, self._clock, poll_timeout_s=self._settings.poll_timeout_s, rng=self._rng,
            retry_base_s=self._retry_base,
        )
        try:
            if self._settings.webhook.enabled:
                await self._start_webhook()
            else:
                await bot.delete_webhook(drop_pending_updates=False)
                self._task = asyncio.create_task(self._intake.run_polling(), name="telegram-poll")
        except TelegramError as exc:
            await self.stop()
            raise self._start_error(exc) from exc
        except BaseException:
            await self.stop()
            raise

    async def _register_commands(self) -> None:
        commands = _command_list(self._env.commands)
        try:
            await self.bot.set_my_commands(commands)
        except TelegramError as exc:  # the menu is a convenience; the bot works without it
            log.warning("telegram: could not register commands: %s", exc)

    async def _start_webhook(self) -> None:
        hook = self._settings.webhook
        if not hook.webhook_url:
            raise AdapterConfigError(
                "adapters.telegram.webhook.webhook_url is empty: set the public HTTPS URL that reaches "
                f"{hook.listen}:{hook.port}/{hook.url_path}, or turn the webhook off to use long polling"
            )
        assert self._intake is not None
        self._runner = web.AppRunner(self._intake.webhook_app(hook.url_path, hook.secret_token))
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, hook.listen, hook.port).start()
        except OSError as exc:
            raise AdapterConfigError(
                f"the Telegram webhook cannot listen on {hook.listen}:{hook.port} ({exc.strerror or exc}); "
                "change adapters.telegram.webhook.port"
            ) from exc
        # One connection at a time keeps the group's messages in order.
        await self.bot.set_webhook(
            hook.webhook_url,
            secret_token=hook.secret_token or None,
            allowed_updates=list(ALLOWED_UPDATES),
            max_connections=1,
        )
        log.info("telegram: receiving updates by webhook on %s:%s/%s", hook.listen, hook.port, hook.url_path)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=15.0)
        except TimeoutError:
            log.warning("telegram: stopping with sends still in flight")
        bot, self._bot = self._bot, None
        if bot is not None:
            await bot.shutdown()

    @property
    def bot(self) -> Bot:
        if self._bot is None:
            raise DeliveryError("the Telegram adapter is not running")
        return self._bot

    # ----------------------------------------------------------------- calling the API

    async def _call(
        self, chat_id: int, fn: Callable[[int], Awaitable[T]], before: Callable[[], Awaitable[None]] | None = None
    ) -> T:
        """Run one API call for ``chat_id`` inside its pacing, honouring flood waits and following a
        group's upgrade to a supergroup. ``before`` runs once pacing allows the request, right before it
        goes out. Non-retryable ``TelegramError``s propagate."""
        backoff = Backoff(base=self._retry_base, cap=max(15.0, self._retry_base), rng=self._rng)
        floods = network = 0
        while True:
            await self._pacer.wait_slot(chat_id, chat_id < 0)
            if before is not None:
                await before()
            try:
                return await fn(chat_id)
            except RetryAfter as exc:
                wait = retry_after_seconds(exc)
                floods += 1
                if floods > MAX_FLOOD_WAITS or wait > MAX_FLOOD_WAIT_S:
                    raise
                log.warning("telegram: flood limit in chat %s; waiting %.0fs as Telegram asks", chat_id, wait)
                self._pacer.hold(chat_id, wait + self._rng.uniform(0.0, 0.5))
            except ChatMigrated as exc:
                new_id = int(exc.new_chat_id)
                if self._chats is not None:
                    await self._chats.record_migration(Migration(chat_id, new_id))
                chat_id = new_id
            except (TimedOut, BadRequest):
                raise  # a timed-out send may have arrived: retrying could post it twice
            except NetworkError as exc:
                network += 1
                if network > MAX_NETWORK_RETRIES:
                    raise
                delay = backoff.next_delay()
                log.warning("telegram: network error in chat %s (%s); retrying in %.1fs", chat_id, exc, delay)
                self._pacer.hold(chat_id, delay)

    def _track(self) -> _InFlight:
        return _InFlight(self)

    # ----------------------------------------------------------------- sending

    async def send(self, out: Outgoing) -> SentRef:
        parts = split_text(out.text, MESSAGE_LIMIT)
        if not parts and not out.files and out.poll is None:
            raise DeliveryError("nothing to send: the text is empty")
        chats = self._chats
        if chats is None or self._bot is None:
            raise DeliveryError("the Telegram adapter is not running")
        with self._track():
            chat_id = await chats.target_of(out.chat.chat_id)
            record_key = SendRecords.key_for(out)
            done = await self._records.load(record_key)
            async with self._pacer.turn(chat_id):
                try:
                    sent = await self._deliver(chat_id, out, parts, done, record_key)
                except TimedOut as exc:  # the request went out: it may have arrived
                    raise DeliveryUncertain(f"Telegram did not answer in time: {exc}") from exc
                except NetworkError as exc:  # Telegram was not reached (after our own retries)
                    raise PlatformUnavailable(f"Telegram is unreachable: {exc}") from exc
                except TelegramError as exc:
                    raise DeliveryError(f"Telegram refused the message: {exc}") from exc
                except (TypeError, ValueError, KeyError) as exc:  # PTB could not parse Telegram's answer
                    raise DeliveryError(f"unexpected answer from Telegram: {exc}") from exc
        return self._ref(out.chat, sent)

    async def _deliver(
        self, chat_id: int, out: Outgoing, parts: list[str], done: list[dict[str, Any]], record_key: str | None
    ) -> list[dict[str, Any]]:
        """Send what ``done`` does not yet hold, in order; returns every delivered item's summary."""
        sent = list(done)
        thread = int(out.thread) if out.thread and out.thread.lstrip("-").isdigit() else None
        reply_to = int(out.reply_to) if out.reply_to and out.reply_to.isdigit() else None
        steps: list[Callable[[int, ReplyParameters | None], Awaitable[TgMessage]]] = []
        for part in parts:
            steps.append(self._text_step(part, thread))
        for f in out.files:
            steps.append(self._file_step(f.name, f.mime, f.data, thread))
        if out.poll is not None:
            steps.append(self._poll_step(out, thread))
        for i, step in enumerate(steps):
            if i < len(done):
                continue  # delivered before a crash; the record says so
            quote = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to and i == 0 else None
            msg = await self._call(
                chat_id,
                lambda cid, s=step, q=quote: s(cid, q),  # type: ignore[misc]
                before=lambda n=i: self._records.attempting(record_key, sent, n),  # from here on it may arrive
            )
            sent.append(
                {"id": msg.message_id, "chat": msg.chat.id, "user": msg.chat.username or "", "date": msg.date.isoformat()}
            )
            await self._records.save(record_key, sent, done=i == len(steps) - 1)
        return sent

    def _text_step(self, text: str, thread: int | None) -> Callable[[int, ReplyParameters | None], Awaitable[TgMessage]]:
        async def run(chat_id: int, quote: ReplyParameters | None) -> TgMessage:
            try:
                return await self.bot.send_message(
                    chat_id, text, reply_parameters=quote, message_thread_id=thread, link_preview_options=NO_PREVIEW
                )
            except BadRequest as exc:
                if thread is None or "thread" not in str(exc).lower():
                    raise
                log.warning("telegram: topic %s of chat %s is gone; sending to the main chat", thread, chat_id)
                return await self.bot.send_message(
                    chat_id, text, reply_parameters=quote, link_preview_options=NO_PREVIEW
                )

        return run

    def _file_step(
        self, name: str, mime: str, data: bytes, thread: int | None
    ) -> Callable[[int, ReplyParameters | None], Awaitable[TgMessage]]:
        async def run(chat_id: int, quote: ReplyParameters | None) -> TgMessage:
            upload = InputFile(data, filename=name)
            if mime in ("image/jpeg", "image/png", "image/webp") and len(data) <= 10 * 1024 * 1024:
                return await self.bot.send_photo(chat_id, upload, reply_parameters=quote, message_thread_id=thread)
            return await self.bot.send_document(chat_id, upload, reply_parameters=quote, message_thread_id=thread)

        return run

    def _poll_step(self, out: Outgoing, thread: int | None) -> Callable[[int, ReplyParameters | None], Awaitable[TgMessage]]:
        poll = out.poll
        assert poll is not None
        options = [truncate(o, POLL_OPTION_LIMIT) for o in poll.options if o.strip()][:12]
        if len(options) < 2:
            raise DeliveryError("a Telegram poll needs at least two options")
        period = poll.close_after_s if poll.close_after_s and 5 <= poll.close_after_s <= 600 else None

        async def run(chat_id: int, quote: ReplyParameters | None) -> TgMessage:
            return await self.bot.send_poll(
                chat_id,
                truncate(poll.question, POLL_QUESTION_LIMIT),
                options,
                is_anonymous=False,
                allows_multiple_answers=poll.multiple,
                open_period=period,
                message_thread_id=thread,
                reply_parameters=quote,
            )

        return run

    def _ref(self, chat: ChatRef, sent: list[dict[str, Any]]) -> SentRef:
        first = sent[0]
        return SentRef(
            chat,
            str(first["id"]),
            url=message_link(int(first["chat"]), int(first["id"]), first.get("user") or None),
            part_ids=tuple(str(s["id"]) for s in sent),
            sent_at=datetime.fromisoformat(first["date"]),
        )

    # ----------------------------------------------------------------- edit, typing, files, admins

    async def edit(self, ref: SentRef, text: str) -> None:
        """Replace a sent message's text. Edits of one message coalesce: if several wait for the chat's turn,
        only the newest text is sent (streamed answers stay within the flood limits)."""
        chats = self._chats
        if chats is None:
            raise DeliveryError("the Telegram adapter is not running")
        with self._track():
            chat_id = await chats.target_of(ref.chat.chat_id)
            key = (chat_id, ref.message_id)
            self._pending_edits[key] = truncate(text.strip() or "…", MESSAGE_LIMIT)
            async with self._pacer.turn(chat_id):
                latest = self._pending_edits.pop(key, None)
                if latest is None:
                    return  # an earlier turn already sent this or newer text
                try:
                    await self._call(
                        chat_id,
                        lambda cid: self.bot.edit_message_text(
                            latest, chat_id=cid, message_id=int(ref.message_id), link_preview_options=NO_PREVIEW
                        ),
                    )
                except BadRequest as exc:
                    if "not modified" in str(exc).lower():
                        return
                    raise DeliveryError(f"Telegram refused the edit: {exc}") from exc
                except TelegramError as exc:
                    raise DeliveryError(f"Telegram refused the edit: {exc}") from exc

    async def delete(self, ref: SentRef) -> None:
        """``bot.ports.MessageDeleter``: delete a message the bot sent (every part). One already gone is
        deleted; Telegram refusing (too old: bots may delete for 48 hours) is a ``DeliveryError``."""
        chats = self._chats
        if chats is None:
            raise DeliveryError("the Telegram adapter is not running")
        with self._track():
            chat_id = await chats.target_of(ref.chat.chat_id)
            for mid in dict.fromkeys((ref.message_id, *ref.part_ids)):
                if not mid.isdigit():
                    continue
                try:
                    await self._call(chat_id, lambda cid, m=int(mid): self.bot.delete_message(cid, m))
                except BadRequest as exc:
                    if "not found" in str(exc).lower():
                        continue
                    raise DeliveryError(f"Telegram refused to delete a message: {exc}") from exc
                except NetworkError as exc:
                    raise PlatformUnavailable(f"Telegram is unreachable: {exc}") from exc
                except TelegramError as exc:
                    raise DeliveryError(f"Telegram refused to delete a message: {exc}") from exc

    async def send_direct(self, user: PersonRef, text: str) -> SentRef:
        """``bot.ports.DirectMessenger``: the private chat with a user is the user's id. Telegram refuses
        (``DeliveryError``) when the user never started the bot."""
        if not user.user_id.isdigit():
            raise DeliveryError("Telegram writes privately only to users")
        return await self.send(Outgoing(ChatRef(self.name, user.user_id), text))

    async def typing(self, chat: ChatRef) -> None:
        try:
            chat_id = await self._chats.target_of(chat.chat_id) if self._chats else int(chat.chat_id)
            await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except Exception as exc:  # noqa: BLE001 - best effort by contract
            log.debug("telegram: typing indicator failed in %s: %s", chat.chat_id, exc)

    async def delivery_attempted(self, out: Outgoing) -> bool:
        """``bot.ports.SendJournal``: whether a request for ``out`` may have reached Telegram (a record is
        written before each part's request), so the core knows when resending after a crash is safe."""
        return await self._records.exists(SendRecords.key_for(out))

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        """Download through ``getFile``; refuses (``DeliveryError``) files past ``max_bytes`` before and after."""
        limit = min(max_bytes, self._env.max_attachment_bytes)
        if att.size and att.size > limit:
            raise DeliveryError(f"{att.name} is {att.size} bytes, over the {limit}-byte limit")
        try:
            tg_file = await self.bot.get_file(att.source)
            if tg_file.file_size and tg_file.file_size > limit:
                raise DeliveryError(f"{att.name} is {tg_file.file_size} bytes, over the {limit}-byte limit")
            data = await tg_file.download_as_bytearray()
        except TelegramError as exc:
            raise DeliveryError(f"could not download {att.name} from Telegram: {exc}") from exc
        if len(data) > limit:
            raise DeliveryError(f"{att.name} is over the {limit}-byte limit")
        return bytes(data)

    async def is_chat_admin(self, chat: ChatRef, user: PersonRef) -> bool:
        if not user.user_id.lstrip("-").isdigit():
            return False
        try:
            chat_id = await self._chats.target_of(chat.chat_id) if self._chats else int(chat.chat_id)
            member = await self.bot.get_chat_member(chat_id, int(user.user_id))
        except TelegramError as exc:
            log.warning("telegram: could not check admin rights in %s: %s", chat.chat_id, exc)
            return False
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


class _InFlight:
    """Counts sends and edits in progress so ``stop`` can let them finish."""

    def __init__(self, adapter: TelegramAdapter) -> None:
        self._a = adapter

    def __enter__(self) -> None:
        self._a._in_flight += 1
        self._a._idle.clear()

    def __exit__(self, *exc: object) -> None:
        self._a._in_flight -= 1
        if not self._a._in_flight:
            self._a._idle.set()


def create_adapter(cfg: TelegramAdapterSettings, env: AdapterEnv) -> TelegramAdapter:
    """The factory of the ``telegram`` plugin (``adapters.telegram``)."""
    return TelegramAdapter(cfg, env)
