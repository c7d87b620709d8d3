"""The platform-neutral event model.

Every adapter turns its platform's payloads into these frozen values and every core component speaks only
these. SDK objects never cross an adapter's edge. Values are JSON-serialisable (``to_dict``/``from_dict``) so
the durable inbox can store them verbatim and replay them after a crash.

Identity rules:

* ``ChatRef.key`` (``"<platform>:<chat_id>"``) names a group; it is the default *pai* (memory scope).
* ``Message.event_id`` is unique per platform event and is what the inbox deduplicates on.
* ``Message.id`` is the platform's message id inside its chat (used for replies, edits, citations). An edit
  (``edited``) or a deletion (``deleted``) carries the id of the message it changes, under its own event id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class ChatRef:
    """A chat on one platform: a group, a channel, a room or a direct conversation."""

    platform: str
    chat_id: str
    title: str = ""

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.chat_id}"


@dataclass(frozen=True, slots=True)
class PersonRef:
    """A member of a chat, identified by an immutable platform id (never the display name)."""

    platform: str
    user_id: str
    display_name: str
    is_bot: bool = False

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class ReplyRef:
    """What a message replies to: the original's id and, when the platform gives it, its text and author."""

    message_id: str
    text: str = ""
    author: PersonRef | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file or image sent with a message. ``source`` is an opaque platform reference the adapter can fetch."""

    kind: str  # "image" | "file" | "audio" | "video"
    name: str
    mime: str
    size: int
    source: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound chat message, as the core sees it."""

    event_id: str
    id: str
    chat: ChatRef
    author: PersonRef
    text: str
    sent_at: datetime
    reply_to: ReplyRef | None = None
    mentions_me: bool = False
    is_direct: bool = False
    from_me: bool = False
    thread: str | None = None
    attachments: tuple[Attachment, ...] = ()
    url: str = ""
    edited: bool = False
    forwarded: bool = False
    # A deletion: the message ``id`` was removed from the chat (``text`` is empty; ``author`` is who removed
    # it when the platform says, else the original's author). Only platforms that report deletions send it.
    deleted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        chat = ChatRef(**data["chat"])
        author = PersonRef(**data["author"])
        reply = data.get("reply_to")
        reply_ref = None
        if reply:
            ra = reply.get("author")
            reply_ref = ReplyRef(reply["message_id"], reply.get("text", ""), PersonRef(**ra) if ra else None)
        return cls(
            event_id=data["event_id"],
            id=data["id"],
            chat=chat,
            author=author,
            text=data["text"],
            sent_at=datetime.fromisoformat(data["sent_at"]),
            reply_to=reply_ref,
            mentions_me=data.get("mentions_me", False),
            is_direct=data.get("is_direct", False),
            from_me=data.get("from_me", False),
            thread=data.get("thread"),
            attachments=tuple(Attachment(**a) for a in data.get("attachments", ())),
            url=data.get("url", ""),
            edited=data.get("edited", False),
            forwarded=data.get("forwarded", False),
            deleted=data.get("deleted", False),
        )


@dataclass(frozen=True, slots=True)
class Poll:
    question: str
    options: tuple[str, ...]
    multiple: bool = False
    close_after_s: int | None = None


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    name: str
    mime: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the core wants delivered. Adapters make ``text`` safe for their platform (no mass pings,
    no previews of links, escaping) and split it at their length limit."""

    chat: ChatRef
    text: str
    reply_to: str | None = None
    thread: str | None = None
    files: tuple[OutgoingFile, ...] = ()
    poll: Poll | None = None
    mention_user_ids: tuple[str, ...] = ()
    idempotency_key: str = ""
    # The first message of an answer streamed by edits (``bot.streaming``): edits follow, and the last one
    # comes through ``bot.ports.StreamFinisher.finish_edit`` where the adapter has it.
    streaming: bool = False


@dataclass(frozen=True, slots=True)
class SentRef:
    """What ``send`` returns: the platform id(s) of what was delivered (the first part when split)."""

    chat: ChatRef
    message_id: str
    url: str = ""
    part_ids: tuple[str, ...] = field(default_factory=tuple)
    sent_at: datetime = field(default_factory=utc_now)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        raise TypeError("bytes are not part of the inbound event model")
    return value
