"""The Matrix adapter's own sync loop: nothing lost, nothing twice.

nio never stores the sync token here. Each ``/sync`` response is turned into core messages and handed to
the durable inbox together with its ``next_batch`` in one ``sink.submit``; only after that commit is the new
token used. A crash at any point therefore replays the last batch, and the inbox drops what it already has
(event ids ``matrix:<event id>``).

* A ``limited`` timeline (a gap, e.g. after downtime) is backfilled through ``/messages`` from the
  timeline's ``prev_batch`` back to the newest event we already committed, our own join, the history
  horizon, or ``backfill_limit`` events, whichever comes first.
* History horizon: on the very first start (no stored token) the bot records nothing from before it
  started, so it never answers a months-old mention; events older than that moment are never backfilled.
  Likewise, the room history shown on joining a room (before our own join) is not recorded.
* Invites are accepted only from ``allowed_inviters`` (full user ids or ``:server`` suffixes; empty means
  nobody) and rejected otherwise. A room the bot is left alone in is left.
* End-to-end encrypted rooms cannot be read (no olm): the room is told once (remembered in the cursor store)
  and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nio import AsyncClient, ErrorResponse, MessageDirection, SyncResponse

from adapters.matrix.convert import Me, Quoted, RoomFacts, quoted_text, replied_event_id, to_deletion, to_message
from adapters.matrix.retry import TRANSPORT_ERRORS, RetryPolicy, retry_delay
from bot.errors import PaibotError
from bot.events import Message
from bot.ports import IntakeSink

log = logging.getLogger("paibot.matrix")

NEXT_BATCH = "matrix:next_batch"
HORIZON = "matrix:horizon_ms"
E2E_WARNED = "matrix:e2e_warned:"
HORIZON_MARGIN_MS = 5 * 60 * 1000
E2E_NOTICE = (
    "This room is end-to-end encrypted, and I can't read encrypted messages (encryption is not supported "
    "by this bot). I won't see, remember or answer anything said here. Talk to me in an unencrypted room."
)


@dataclass(frozen=True, slots=True)
class SyncOptions:
    timeline_limit: int = 50
    backfill_limit: int = 500
    sync_timeout_ms: int = 30_000
    allowed_inviters: tuple[str, ...] = ()


def inviter_allowed(inviter: str, allowed: tuple[str, ...]) -> bool:
    """Exact user ids, or ``:server.name`` entries matching the inviter's server exactly. Fail-closed."""
    server = inviter.split(":", 1)[1] if ":" in inviter else ""
    for entry in allowed:
        if entry.startswith(":") and server and server == entry[1:]:
            return True
        if entry.startswith("@") and entry == inviter:
            return True
    return False


def _is_own_join(src: dict[str, Any], user_id: str) -> bool:
    if src.get("type") != "m.room.member" or src.get("state_key") != user_id:
        return False
    prev = ((src.get("unsigned") or {}).get("prev_content") or {}).get("membership")
    return (src.get("content") or {}).get("membership") == "join" and prev != "join"


class QuoteCache:
    """Recently seen events (id -> sender, text), so replies rarely need a round trip."""

    def __init__(self, size: int = 2000) -> None:
        self._items: OrderedDict[str, Quoted] = OrderedDict()
        self._size = size

    def put(self, event_id: str, sender: str, text: str) -> None:
        self._items[event_id] = Quoted(event_id, sender, text)
        self._items.move_to_end(event_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, event_id: str) -> Quoted | None:
        return self._items.get(event_id)


class MatrixSync:
    """Runs the sync loop of one logged-in client. ``run`` returns only when cancelled."""

    def __init__(self, client: AsyncClient, sink: IntakeSink, me: Callable[[], Me], options: SyncOptions,
                 quotes: QuoteCache, notify: Callable[[str, str], Awaitable[None]],
                 relogin: Callable[[], Awaitable[bool]], retry: RetryPolicy | None = None) -> None:
        self._client, self._sink, self._me, self._opt = client, sink, me, options
        self._quotes, self._notify, self._relogin = quotes, notify, relogin
        self._retry = retry or RetryPolicy()
        self._backoff = self._retry.backoff()
        self._warned: set[str] = set()
        self._horizon_ms = 0
        self.synced = asyncio.Event()  # set after the first batch is committed

    async def run(self) -> None:
        token = await self._sink.cursor(NEXT_BATCH)
        horizon = await self._sink.cursor(HORIZON)
        # The margin absorbs clock skew between this host and the homeserver.
        self._horizon_ms = int(horizon) if horizon else int(time.time() * 1000) - HORIZON_MARGIN_MS
        if horizon is None:
            await self._sink.submit([], cursor_key=HORIZON, cursor=str(self._horizon_ms))
        full_state = True
        while True:
            try:
                resp = await self._sync_once(token, full_state)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:  # an unexpected client failure must not end intake; back off and go on
                delay = self._backoff.next_delay()
                log.exception("matrix: sync raised; retrying in %.1fs", delay)
                await self._retry.sleep(delay)
                continue
            if resp is None:
                continue
            try:
                events = await self._process(resp, first=token is None)
                await self._sink.submit(events, cursor_key=NEXT_BATCH, cursor=resp.next_batch)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:  # one bad batch must not kill the loop; it is retried with the same token
                delay = self._backoff.next_delay()
                log.exception("matrix: handling a sync batch failed; retrying in %.1fs", delay)
                await self._retry.sleep(delay)
                continue
            token, full_state = resp.next_batch, False
            self._backoff.reset()
            self.synced.set()

    async def _sync_once(self, token: str | None, full_state: bool) -> SyncResponse | None:
        limit = 1 if token is None else self._opt.timeline_limit
        sync_filter = {"room": {"timeline": {"limit": limit}}, "presence": {"not_types": ["*"]}}
        try:
            resp = await self._client.sync(
                timeout=0 if full_state else self._opt.sync_timeout_ms, since=token,
                full_state=full_state if token else None, sync_filter=sync_filter,
            )
        except TRANSPORT_ERRORS as exc:
            delay = self._backoff.next_delay()
            log.warning("matrix: sync failed (%s); retrying in %.1fs", type(exc).__name__, delay)
            await self._retry.sleep(delay)
            return None
        if isinstance(resp, SyncResponse):
            return resp
        revoked = isinstance(resp, ErrorResponse) and resp.status_code == "M_UNKNOWN_TOKEN"
        if revoked and await self._relogin():
            return None
        delay = retry_delay(resp, self._backoff)
        log.warning("matrix: sync refused (%s); retrying in %.1fs", resp, delay)
        await self._retry.sleep(delay)
        return None

    # ----------------------------------------------------------------- one batch

    async def _process(self, resp: SyncResponse, first: bool) -> list[Message]:
        await self._handle_invites(resp)
        for room_id in resp.rooms.leave:
            log.info("matrix: no longer in room %s (left, kicked or banned)", room_id)
        out: list[Message] = []
        ids: set[str] = set()
        for room_id, info in resp.rooms.join.items():
            for msg in await self._room_messages(room_id, info, first):
                if msg.event_id not in ids:
                    ids.add(msg.event_id)
                    out.append(msg)
            await self._leave_if_alone(room_id, info)
        return out

    async def _room_messages(self, room_id: str, info: Any, first: bool) -> list[Message]:
        me = self._me()
        sources = [getattr(e, "source", None) or {} for e in info.timeline.events]
        sources += [getattr(e, "source", None) or {} for e in info.state]
        await self._check_encryption(room_id, sources)
        timeline = [getattr(e, "source", None) or {} for e in info.timeline.events]
        for src in timeline:
            self._remember_quote(src)
        if first:
            return []  # history from before the bot's first start is not recorded (see module docstring)
        joined_at = next((i for i, s in enumerate(timeline) if _is_own_join(s, me.user_id)), None)
        if joined_at is not None:
            timeline = timeline[joined_at + 1:]
        elif info.timeline.limited and info.timeline.prev_batch:
            timeline = await self._backfill(room_id, info.timeline.prev_batch, me) + timeline
        facts = self._room_facts(room_id)
        out = []
        for src in timeline:
            try:
                msg = await self._convert(src, facts, me)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:  # a malformed event is skipped, never fatal
                log.exception("matrix: could not convert event %s in %s", src.get("event_id"), room_id)
                continue
            if msg is not None:
                out.append(msg)
        return out

    async def _convert(self, src: dict[str, Any], facts: RoomFacts, me: Me) -> Message | None:
        if (src.get("origin_server_ts") or 0) < self._horizon_ms:
            return None
        if src.get("type") == "m.room.redaction":
            return to_deletion(src, facts, me)
        if src.get("type") != "m.room.message":
            return None
        quoted = None
        replied = replied_event_id(src)
        if replied:
            quoted = await self._lookup(facts.room_id, replied)
        return to_message(src, facts, me, quoted)

    async def _backfill(self, room_id: str, prev_batch: str, me: Me) -> list[dict[str, Any]]:
        """Events in the gap before a limited timeline, oldest first (bounded; see module docstring)."""
        collected: list[dict[str, Any]] = []
        token: str | None = prev_batch
        while token and len(collected) < self._opt.backfill_limit:
            page = min(100, self._opt.backfill_limit - len(collected))
            resp = await self._retry.call(
                lambda t=token: self._client.room_messages(room_id, start=t, direction=MessageDirection.back,
                                                           limit=page),
                what=f"backfill {room_id}",
            )
            if isinstance(resp, ErrorResponse):
                log.warning("matrix: backfill of %s stopped: %s", room_id, resp)
                break
            if not resp.chunk:
                break
            for event in resp.chunk:
                src = getattr(event, "source", None) or {}
                if await self._reached_known(src, me):
                    return list(reversed(collected))
                collected.append(src)
                self._remember_quote(src)
            token = resp.end
        if len(collected) >= self._opt.backfill_limit:
            log.warning("matrix: backfill of %s hit the limit of %d events; older ones are not recorded",
                        room_id, self._opt.backfill_limit)
        log.info("matrix: backfilled %d events in %s", len(collected), room_id)
        return list(reversed(collected))

    async def _reached_known(self, src: dict[str, Any], me: Me) -> bool:
        if _is_own_join(src, me.user_id) or (src.get("origin_server_ts") or 0) < self._horizon_ms:
            return True
        event_id = src.get("event_id")
        if src.get("type") != "m.room.message" or not event_id:
            return False
        return await self._sink.seen(f"matrix:{event_id}")

    # ----------------------------------------------------------------- rooms

    def _room_facts(self, room_id: str) -> RoomFacts:
        room = self._client.rooms.get(room_id)
        if room is None:
            return RoomFacts(room_id, room_id, False, {})
        names = {uid: (u.display_name or uid) for uid, u in room.users.items()}
        return RoomFacts(room_id, room.display_name or room_id, room.member_count == 2, names)

    def _remember_quote(self, src: dict[str, Any]) -> None:
        if src.get("type") == "m.room.message" and src.get("event_id") and src.get("sender"):
            self._quotes.put(src["event_id"], src["sender"], quoted_text(src))

    async def _lookup(self, room_id: str, event_id: str) -> Quoted:
        cached = self._quotes.get(event_id)
        if cached is not None:
            return cached
        resp = await self._retry.call(lambda: self._client.room_get_event(room_id, event_id),
                                  what="fetch replied event", attempts=2)
        if isinstance(resp, ErrorResponse):
            log.info("matrix: replied event %s not readable: %s", event_id, resp)
            return Quoted(event_id, "", "")
        src = getattr(resp.event, "source", None) or {}
        self._remember_quote(src)
        return self._quotes.get(event_id) or Quoted(event_id, str(src.get("sender", "")), "")

    async def _handle_invites(self, resp: SyncResponse) -> None:
        me = self._me()
        for room_id, info in resp.rooms.invite.items():
            inviter = ""
            for ev in info.invite_state:
                # nio moves an invite member event's content into attributes (``membership``).
                for_me = getattr(ev, "state_key", None) == me.user_id
                if for_me and getattr(ev, "membership", None) == "invite":
                    inviter = str(getattr(ev, "sender", ""))
            if inviter_allowed(inviter, self._opt.allowed_inviters):
                log.info("matrix: joining %s (invited by %s)", room_id, inviter)
                result = await self._retry.call(lambda r=room_id: self._client.join(r),
                                                what=f"join {room_id}")
            else:
                log.warning("matrix: refusing the invite to %s from %s "
                            "(not in adapters.matrix.allowed_inviters)",
                            room_id, inviter or "an unknown user")
                result = await self._retry.call(lambda r=room_id: self._client.room_leave(r),
                                                what=f"reject {room_id}")
            if isinstance(result, ErrorResponse):
                # Raising retries the whole batch with the same token, so the invite is not lost.
                raise RuntimeError(f"answering the invite to {room_id} failed: {result}")

    async def _leave_if_alone(self, room_id: str, info: Any) -> None:
        sources = [getattr(e, "source", None) or {} for e in info.timeline.events]
        left = any(
            s.get("type") == "m.room.member"
            and (s.get("content") or {}).get("membership") in ("leave", "ban")
            for s in sources
        )
        room = self._client.rooms.get(room_id)
        if left and room is not None and room.joined_count <= 1 and room.invited_count == 0:
            log.info("matrix: everyone else left %s; leaving it too", room_id)
            await self._retry.call(lambda: self._client.room_leave(room_id), what=f"leave {room_id}")

    async def _check_encryption(self, room_id: str, sources: list[dict[str, Any]]) -> None:
        room = self._client.rooms.get(room_id)
        encrypted = bool(room and room.encrypted) or any(
            s.get("type") in ("m.room.encryption", "m.room.encrypted") for s in sources
        )
        if not encrypted or room_id in self._warned:
            return
        self._warned.add(room_id)
        if await self._sink.cursor(E2E_WARNED + room_id):
            return
        log.warning("matrix: room %s is end-to-end encrypted; encryption is not supported, so its encrypted "
                    "messages are not read", room_id)
        try:
            await self._notify(room_id, E2E_NOTICE)
        except PaibotError as exc:  # tried again after the next restart
            log.warning("matrix: could not tell %s that encryption is unsupported: %s", room_id, exc)
            return
        await self._sink.submit([], cursor_key=E2E_WARNED + room_id, cursor="1")
