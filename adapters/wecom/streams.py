"""The answer slots of WeCom's stream-refresh protocol, one per message addressed to the bot. Pure state.

WeCom's protocol: the callback carrying a member's message is answered with a stream
``{"id", "finish": false, "content": ""}``; WeCom then calls back again and again (``msgtype: stream``, the
stream's id) and each answer shows the content so far, until one says ``finish: true`` or six minutes
passed. So an answer is not pushed: it waits in its slot and goes out with the next refresh.

    open(msgid, chat, response_url)   a slot for a message (the same one again for a retried callback)
    put(slot, text, final)            the answer so far; ``final`` closes it
    refresh(stream_id)                what the next refresh shows: (content, finish)
    late(slot)                        the slot can no longer show anything new (closed, or WeCom stopped
                                      refreshing): the answer must go through its ``response_url``

    forget(erasure)                   empty the answers an erasure reaches (``bot.ports.ContentEraser``)

Content is capped at WeCom's 20480 bytes. Slots are forgotten once their ``response_url`` expired (an hour).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bot.events import ChatRef
from bot.ports import Erasure

MAX_CONTENT_BYTES = 20480


@dataclass
class Slot:
    msgid: str
    stream_id: str
    chat: ChatRef
    opened: float  # unix time
    response_url: str = ""
    content: str = ""
    finished: bool = False
    response_used: bool = False
    author_id: str = ""  # who asked (unknown for a slot restored after a restart: it holds no answer yet)


def stream_id_for(msgid: str) -> str:
    return "pai" + hashlib.sha256(msgid.encode()).hexdigest()[:24]


def clip(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= MAX_CONTENT_BYTES:
        return text
    return data[:MAX_CONTENT_BYTES].decode("utf-8", "ignore")


class StreamBoard:
    def __init__(self, window_s: float, url_ttl_s: float) -> None:
        self._window = window_s
        self._ttl = url_ttl_s
        self._by_msg: dict[str, Slot] = {}
        self._by_stream: dict[str, Slot] = {}

    def open(self, msgid: str, chat: ChatRef, response_url: str, now: float, author_id: str = "") -> Slot:
        slot = self._by_msg.get(msgid)
        if slot is None:
            slot = Slot(msgid, stream_id_for(msgid), chat, now, response_url, author_id=author_id)
            self._by_msg[msgid] = slot
            self._by_stream[slot.stream_id] = slot
        self._expire(now)
        return slot

    def by_msg(self, msgid: str) -> Slot | None:
        return self._by_msg.get(msgid)

    def by_stream(self, stream_id: str) -> Slot | None:
        return self._by_stream.get(stream_id)

    def latest_with_url(self, chat: ChatRef, now: float) -> Slot | None:
        """The chat's newest slot whose ``response_url`` is unused and still valid."""
        best = None
        for slot in self._by_msg.values():
            if (
                slot.chat.chat_id == chat.chat_id
                and slot.response_url
                and not slot.response_used
                and now - slot.opened < self._ttl
            ):
                if best is None or slot.opened >= best.opened:
                    best = slot
        return best

    def late(self, slot: Slot, now: float) -> bool:
        return slot.finished or now - slot.opened >= self._window

    def put(self, slot: Slot, text: str, final: bool) -> None:
        slot.content = clip(text)
        slot.finished = slot.finished or final

    def refresh(self, stream_id: str, now: float) -> tuple[str, bool]:
        """What a refresh of ``stream_id`` shows. A slot past the window is closed with what it has (WeCom
        would stop asking anyway); an unknown stream (from before a restart) is closed empty."""
        slot = self._by_stream.get(stream_id)
        if slot is None:
            return "", True
        if now - slot.opened >= self._window:
            slot.finished = True
        return slot.content, slot.finished

    def forget(self, erasure: Erasure) -> int:
        """Empty (and close) the answers in the erasure's chats that answer a forgotten message (hers, or
        one named by id), quote what is forgotten, or were opened before a retention cutoff; a refresh
        then shows nothing. Returns how many answers were emptied."""
        cutoff = erasure.before.timestamp() if erasure.before is not None else None
        emptied = 0
        for slot in self._by_msg.values():
            if not slot.content or slot.chat.key not in erasure.chat_keys:
                continue
            if (
                (erasure.author_id is not None and slot.author_id == erasure.author_id)
                or slot.msgid in erasure.message_ids
                or (cutoff is not None and slot.opened < cutoff)
                or erasure.quoted_in(slot.content)
            ):
                slot.content, slot.finished = "", True
                emptied += 1
        return emptied

    def _expire(self, now: float) -> None:
        for msgid in [m for m, s in self._by_msg.items() if now - s.opened >= self._ttl]:
            slot = self._by_msg.pop(msgid)
            self._by_stream.pop(slot.stream_id, None)
