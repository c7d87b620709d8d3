"""Streamed replies: the answer appears in the chat while the model writes it, in one message edited as the
text grows.

    ReplyStream (a ``bot.ports.TextSink``, fed by the brain)
      update(text)   before the first message: wait for ``FIRST_CHARS`` characters or ``FIRST_WAIT_S``
                     seconds of text, then claim the reply in the ledger and send the first message (the
                     caller's typing indicator stops there); after it, edit at most every EDIT_INTERVAL_S
      reset()        the text so far is void (a retry, a fallback, a tool round): the next text starts over
      finish(text)   the final text (plus what the claim asked to append, e.g. the welcome note) goes into
                     the ledger, into the message (the part that fits the platform) and, for the rest,
                     into ordinary follow-up messages the adapter splits; then the reply counts as sent.
                     False when nothing was streamed: the caller replies the ordinary way.
    resume_streamed  a streamed reply a restart interrupted, from its ledger payload.

The ledger payload of a streamed reply has ``resendable: false`` (an ordinary resend would post a second
message) and a ``stream`` object naming the message (``ref``, ``url``, ``at``; null before it is out); its
``text`` stays empty until the final text is known. Time comes from the injected clock only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.events import Message, Outgoing, SentRef
from bot.ports import ChatAdapter
from bot.services import Services

log = logging.getLogger("paibot.streaming")

EDIT_INTERVAL_S = 1.5  # at most one edit of a streamed message per this many seconds
FIRST_CHARS = 40  # the first message goes out once the answer has this many characters...
FIRST_WAIT_S = 1.5  # ...or once its text has been arriving for this long
INTERRUPTED = "(This answer was interrupted by a restart. Please ask again.)"

Claim = Callable[[str], Awaitable[str | None]]  # payload -> text to append at the end, or None: not ours
Release = Callable[[str], Awaitable[None]]  # undo a claim (given what it asked to append)
Opened = Callable[[], Awaitable[None]]


class ReplyStream:
    """Shows one answer to ``msg`` while it is written, through ``adapter`` (which must support edits).

    ``claim(payload)`` claims the reply in the ledger before the first platform send and returns the text
    to append to the final answer ("" for none), or None when the reply is claimed already (then nothing is
    streamed); ``release(appended)`` undoes a claim whose first send failed. ``on_open`` runs once the first
    message is out. ``update`` and ``reset`` never raise (``TextSink``); platform errors are logged.
    """

    def __init__(
        self,
        msg: Message,
        services: Services,
        adapter: ChatAdapter,
        claim: Claim,
        release: Release,
        *,
        on_open: Opened | None = None,
        edit_interval_s: float = EDIT_INTERVAL_S,
        first_chars: int = FIRST_CHARS,
        first_wait_s: float = FIRST_WAIT_S,
    ) -> None:
        self._msg = msg
        self._s = services
        self._adapter = adapter
        self._claim = claim
        self._release = release
        self._on_open = on_open
        self._interval = edit_interval_s
        self._first_chars = first_chars
        self._first_wait = first_wait_s
        self._ref: SentRef | None = None
        self._began: datetime | None = None  # when the text of the current attempt began to arrive
        self._last_edit: datetime | None = None
        self._shown = ""
        self._suffix = ""
        self._closed = False  # the claim was refused or the first send failed: stream nothing more

    @property
    def opened(self) -> bool:
        """Whether the first message is out (from then on the reply is this stream's to finish)."""
        return self._ref is not None

    # ------------------------------------------------------------------ TextSink

    async def update(self, text: str) -> None:
        if self._closed or not text.strip():
            return
        now = self._s.clock.now()
        if self._ref is None:
            self._began = self._began or now
            if len(text.strip()) >= self._first_chars or _seconds(self._began, now) >= self._first_wait:
                await self._open(text)
        elif self._last_edit is None or _seconds(self._last_edit, now) >= self._interval:
            await self._edit(text)

    async def reset(self) -> None:
        # What is on screen stays until the next attempt's text replaces it (or the final edit does).
        self._began = None

    # ------------------------------------------------------------------ the end

    async def finish(self, text: str) -> bool:
        """Put the final ``text`` in place (see the module docstring); False when nothing was streamed."""
        if self._ref is None:
            return False
        full = text + self._suffix
        await self._s.state.update_reply_payload(self._msg.event_id, stream_payload(self._msg, full, self._ref))
        if self._last_edit is not None:
            wait = self._interval - _seconds(self._last_edit, self._s.clock.now())
            if wait > 0:
                await self._s.clock.sleep(wait)
        await deliver_final(self._s, self._adapter, self._msg, self._ref, full)
        return True

    # ------------------------------------------------------------------ platform calls

    async def _open(self, text: str) -> None:
        msg = self._msg
        suffix = await self._claim(stream_payload(msg, "", None))
        if suffix is None:
            self._closed = True
            return
        self._suffix = suffix
        head = split_head(text, self._adapter.capabilities.max_text_length)[0]
        out = Outgoing(
            chat=msg.chat, text=head, reply_to=msg.id, thread=msg.thread,
            mention_user_ids=(msg.author.user_id,), idempotency_key=msg.event_id, streaming=True,
        )
        try:
            ref = await self._adapter.send(out)
        except Exception as exc:  # the sink never raises: the answer goes out the ordinary way at the end
            log.warning("could not start the streamed reply to %s (%s); it will be sent whole", msg.event_id, exc,
                        exc_info=True)
            self._closed = True
            await self._release(suffix)
            return
        except BaseException:  # cancelled while the platform had it: let a retry send it again
            await asyncio.shield(self._release(suffix))
            raise
        self._ref, self._shown, self._last_edit = ref, head, self._s.clock.now()
        for mid in (ref.message_id, *ref.part_ids):  # replies to it count as replies to the bot at once
            await self._s.state.group_set(msg.chat.key, f"own:{mid}", "1")
        await self._s.state.update_reply_payload(msg.event_id, stream_payload(msg, "", ref))
        if self._on_open is not None:
            await self._on_open()

    async def _edit(self, text: str) -> None:
        assert self._ref is not None
        head = split_head(text, self._adapter.capabilities.max_text_length)[0]
        if head == self._shown:
            return
        try:
            await self._adapter.edit(self._ref, head)
        except Exception as exc:  # noqa: BLE001 - a missed edit is made good by the next one or the last one
            log.warning("could not edit the streamed reply to %s: %s", self._msg.event_id, exc)
        else:
            self._shown = head
        self._last_edit = self._s.clock.now()


async def deliver_final(
    s: Services, adapter: ChatAdapter, msg: Message, ref: SentRef, full: str, *, send_rest: bool = True
) -> None:
    """Edit the streamed message ``ref`` to the part of ``full`` that fits, send the rest as follow-ups
    (unless ``send_rest`` is False), remember what was said, and mark the reply sent. If the platform
    refuses the edit, ``full`` is sent as a new message instead, so the answer is never lost."""
    head, rest = split_head(full, adapter.capabilities.max_text_length)
    final_edit = getattr(adapter, "finish_edit", None) or adapter.edit  # bot.ports.StreamFinisher
    try:
        await final_edit(ref, head)
    except Exception as exc:
        log.warning("the streamed reply to %s could not be completed by an edit (%s); sending it anew",
                    msg.event_id, exc, exc_info=True)
        out = Outgoing(chat=msg.chat, text=full, reply_to=msg.id, thread=msg.thread,
                       idempotency_key=f"{msg.event_id}:final")
        await s.state.reply_sent(msg.event_id, (await s.send(out)).message_id)
        return
    shown = Outgoing(chat=msg.chat, text=head, reply_to=msg.id, thread=msg.thread,
                     mention_user_ids=(msg.author.user_id,), idempotency_key=msg.event_id)
    await s.remember_own(shown, ref)
    for hook in s.sent_hooks:
        try:
            await hook(shown, ref)
        except Exception:  # the message is out: a hook failing must not make anyone send it again
            log.exception("a sent-hook failed for a streamed reply in %s", msg.chat.key)
    if rest and send_rest:
        await s.send(Outgoing(chat=msg.chat, text=rest, thread=msg.thread, idempotency_key=f"{msg.event_id}:rest"))
    elif rest:
        log.warning("the end of the reply to %s may be missing after a restart (no idempotent sends)", msg.event_id)
    await s.state.reply_sent(msg.event_id, ref.message_id)


async def resume_streamed(s: Services, adapter: ChatAdapter | None, msg: Message, data: dict[str, Any]) -> None:
    """Finish a streamed reply a restart interrupted. With its final text known: edit and follow up
    (follow-ups only where sends are idempotent, so nothing is doubled). Cut mid-answer: the message says
    it was interrupted. Before its first message was confirmed: nothing can be done safely (logged)."""
    stream = data.get("stream") or {}
    mid = stream.get("ref")
    if not mid or adapter is None or not adapter.capabilities.edit:
        log.warning("the streamed reply to %s was interrupted by a restart and may be missing", msg.event_id)
        return
    ref = SentRef(chat=msg.chat, message_id=str(mid), url=str(stream.get("url") or ""))
    with contextlib.suppress(KeyError, TypeError, ValueError):  # when it went out, for the memory record
        ref = dataclasses.replace(ref, sent_at=datetime.fromisoformat(stream["at"]))
    text = str(data.get("text") or "")
    if text:
        log.info("completing the streamed reply to %s that a restart interrupted", msg.event_id)
        await deliver_final(s, adapter, msg, ref, text, send_rest=adapter.capabilities.idempotent_sends)
        return
    try:
        await adapter.edit(ref, INTERRUPTED)
    except Exception as exc:
        log.warning("could not mark the interrupted reply to %s: %s", msg.event_id, exc, exc_info=True)
    await s.state.reply_sent(msg.event_id, ref.message_id)


# --------------------------------------------------------------------------- ledger payloads


def stream_payload(msg: Message, text: str, ref: SentRef | None) -> str:
    """The reply ledger's record of a streamed reply (see the module docstring)."""
    return json.dumps({
        "text": text, "reply_to": msg.id, "thread": msg.thread, "mention_user_ids": [msg.author.user_id],
        "resendable": False,
        "stream": {"ref": ref.message_id if ref else None, "url": ref.url if ref else "",
                   "at": ref.sent_at.isoformat() if ref else ""},
    }, ensure_ascii=False)


def streamed_payload(payload: str) -> dict[str, Any] | None:
    """The decoded payload when it records a streamed reply, else None."""
    try:
        data = json.loads(payload) if payload else None
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("stream"), dict) else None


# --------------------------------------------------------------------------- text


def split_head(text: str, limit: int) -> tuple[str, str]:
    """``text`` cut in two: a head of at most ``limit`` UTF-16 units (the strictest way platforms count,
    Telegram's), ending at a paragraph, line, sentence or word break when one lies in its second half,
    and the rest ("" when everything fits)."""
    if _units(text) <= limit:
        return text, ""
    cut = _prefix_within(text, max(1, limit))
    window = text[:cut]
    for sep in ("\n\n", "\n", ". ", " "):
        at = window.rfind(sep)
        if at >= cut // 2:
            end = at + len(sep.rstrip()) if sep.strip() else at
            return text[:end].rstrip(), text[at + len(sep) :].lstrip()
    return window, text[cut:]


def _units(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _prefix_within(text: str, limit: int) -> int:
    """The length of the longest prefix of ``text`` within ``limit`` UTF-16 units."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _seconds(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()


__all__ = [
    "EDIT_INTERVAL_S", "FIRST_CHARS", "FIRST_WAIT_S", "INTERRUPTED", "ReplyStream", "deliver_final",
    "resume_streamed", "split_head", "stream_payload", "streamed_payload",
]
