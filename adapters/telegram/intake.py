"""Telegram intake: updates -> durable inbox, acknowledged only after the commit.

Long polling (default): ``getUpdates(offset)`` confirms every update below ``offset``. We ask for the next
batch with ``offset = max(update_id) + 1`` only after ``sink.submit`` committed the batch's events *and*
that offset, so a crash at any point either replays a batch (the inbox drops duplicates by ``event_id``) or
resumes after it; nothing is lost and nothing is taken twice. python-telegram-bot's own ``Updater`` confirms
updates as soon as it has queued them, which is why it is not used here.

Webhook (optional): Telegram POSTs each update; we answer 200 only after the commit, anything else makes
Telegram deliver it again.

Malformed updates are logged and skipped but still acknowledged, so one bad payload cannot wedge intake.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import warnings
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.warnings import PTBUserWarning

from adapters.telegram.convert import BotIdentity, migration_of, to_event
from adapters.telegram.flow import Backoff
from adapters.telegram.chats import ChatMap
from bot.events import Message
from bot.ports import Clock, IntakeSink

log = logging.getLogger("paibot.telegram")

OFFSET_KEY = "telegram:offset"
WEBHOOK_KEY = "telegram:webhook"
ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def retry_after_seconds(exc: RetryAfter) -> float:
    """``exc.retry_after`` in seconds, whichever of int or timedelta this PTB version returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value: Any = exc.retry_after
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


class TelegramIntake:
    """Turns Telegram updates into committed inbox events. One instance per running adapter."""

    def __init__(
        self,
        bot: Bot,
        me: BotIdentity,
        sink: IntakeSink,
        chats: ChatMap,
        clock: Clock,
        *,
        poll_timeout_s: int = 30,
        rng: random.Random | None = None,
        retry_base_s: float = 1.0,
    ) -> None:
        self._retry_base = retry_base_s
        self._bot = bot
        self._me = me
        self._sink = sink
        self._chats = chats
        self._clock = clock
        self._timeout = poll_timeout_s
        self._rng = rng or random.Random()
        self.offset = 0

    # ----------------------------------------------------------------- shared by both modes

    async def commit(self, batch: Sequence[tuple[int, Update | None]], cursor_key: str) -> int:
        """Convert and commit one batch of ``(update_id, update or None if unparsable)``; returns the
        cursor committed (``max update_id + 1``). Raises whatever the sink raises."""
        updates = [u for _, u in batch if u is not None]
        await self._chats.prime(
            [m.chat.id for u in updates for m in (u.effective_message,)
             if m is not None and m.chat is not None and isinstance(m.chat.id, int)]
        )
        events: list[Message] = []
        for update in updates:
            # PTB does not type-check what it parses: any field may hold anything. A malformed update is
            # skipped; raising here would fail the whole batch, which would then be fetched again forever.
            try:
                migration = migration_of(update)
            except Exception as exc:  # noqa: BLE001
                log.warning("skipping malformed update %s: %s", update.update_id, exc)
                continue
            if migration is not None:
                await self._chats.record_migration(migration)
            try:
                event = to_event(update, self._me, self._chats.key_of)
            except Exception as exc:  # noqa: BLE001 - MalformedUpdate and whatever junk fields raise
                log.warning("skipping malformed update %s: %s", update.update_id, exc)
                continue
            if event is not None:
                events.append(event)
        next_cursor = max(uid for uid, _ in batch) + 1
        await self._sink.submit(events, cursor_key=cursor_key, cursor=str(next_cursor))
        return next_cursor

    # ----------------------------------------------------------------- long polling

    async def _fetch(self, offset: int) -> list[tuple[int, Update | None]]:
        try:
            updates = await self._bot.get_updates(
                offset=offset, timeout=self._timeout, allowed_updates=list(ALLOWED_UPDATES)
            )
            return [(u.update_id, u) for u in updates]
        except TelegramError:
            raise
        except Exception as exc:  # python-telegram-bot could not parse some update of the batch
            log.warning("a batch of updates did not parse (%s); parsing them one by one", exc)
        return await self._fetch_raw(offset)

    async def _fetch_raw(self, offset: int) -> list[tuple[int, Update | None]]:
        with warnings.catch_warnings():  # PTB suggests get_updates, which is exactly what failed to parse
            warnings.simplefilter("ignore", PTBUserWarning)
            raw = await self._bot.do_api_request(
                "getUpdates", api_kwargs={"offset": offset, "timeout": 0, "allowed_updates": list(ALLOWED_UPDATES)}
            )
        out: list[tuple[int, Update | None]] = []
        for item in raw if isinstance(raw, list) else ():
            uid = item.get("update_id") if isinstance(item, dict) else None
            if not isinstance(uid, int) or isinstance(uid, bool):
                log.warning("skipping an update without update_id")
                continue
            try:
                out.append((uid, Update.de_json(item, self._bot)))
            except Exception as exc:  # noqa: BLE001 - any parse failure means: skip this one update
                log.warning("skipping malformed update %s: %s", uid, exc)
                out.append((uid, None))
        return out

    async def run_polling(self) -> None:
        """Poll until cancelled. Starts from the committed offset; never advances past an uncommitted batch."""
        stored = await self._sink.cursor(OFFSET_KEY)
        self.offset = int(stored) if stored and stored.lstrip("-").isdigit() else 0
        log.info("telegram: polling for updates from offset %d", self.offset)
        backoff = Backoff(base=self._retry_base, cap=max(60.0, self._retry_base), rng=self._rng)
        while True:
            try:
                batch = await self._fetch(self.offset)
            except RetryAfter as exc:
                await self._clock.sleep(retry_after_seconds(exc) + self._rng.uniform(0, 0.5))
                continue
            except InvalidToken:
                log.error("telegram: the bot token was rejected while polling (revoked?); retrying with backoff")
                await self._clock.sleep(backoff.next_delay())
                continue
            except Conflict as exc:
                log.error("telegram: getUpdates conflict (%s): another process polls with this token", exc)
                await self._clock.sleep(backoff.next_delay())
                continue
            except TelegramError as exc:
                delay = backoff.next_delay()
                log.warning("telegram: getUpdates failed (%s); retrying in %.1fs", exc, delay)
                await self._clock.sleep(delay)
                continue
            if not batch:
                backoff.reset()
                continue
            try:
                self.offset = await self.commit(batch, OFFSET_KEY)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the inbox failed; keep the offset and fetch the batch again
                delay = backoff.next_delay()
                log.exception("telegram: could not commit %d updates; retrying in %.1fs", len(batch), delay)
                await self._clock.sleep(delay)
                continue
            backoff.reset()

    # ----------------------------------------------------------------- webhook

    def webhook_app(self, path: str, secret: str) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/" + path.lstrip("/"), self._make_handler(secret))
        return app

    def _make_handler(self, secret: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            if secret and not hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), secret):
                return web.Response(status=403)
            try:
                data = await request.json()
                uid = data["update_id"]
                if not isinstance(uid, int):
                    raise TypeError("update_id is not a number")
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("telegram webhook: skipping a malformed update: %s", exc)
                return web.Response(status=200)  # acknowledged: re-sending it would not fix it
            try:
                update: Update | None = Update.de_json(data, self._bot)
            except Exception as exc:  # noqa: BLE001 - any parse failure means: skip this one update
                log.warning("telegram webhook: skipping malformed update %s: %s", uid, exc)
                update = None
            try:
                await self.commit([(uid, update)], WEBHOOK_KEY)
            except Exception:  # noqa: BLE001 - not committed: let Telegram deliver it again
                log.exception("telegram webhook: could not commit update %s", uid)
                return web.Response(status=500)
            return web.Response(status=200)

        return handle
