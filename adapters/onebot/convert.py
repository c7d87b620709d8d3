"""OneBot v11 message events -> paibot events.

Identity rules for QQ through OneBot (platform ``onebot``):

* A group's ``ChatRef.chat_id`` is its group number (``onebot:123456789``); a private chat's is
  ``private:<QQ number>``. A member is ``PersonRef("onebot", "<QQ number>", ...)``.
* ``Message.id`` is the implementation's ``message_id`` (what ``reply`` segments and ``get_msg`` take).
* ``Message.event_id`` is ``onebot:<chat id>:<fingerprint>``, the fingerprint a digest of the sender, the
  send time (QQ's, in seconds) and the message's stable content (text, mentioned QQ numbers, media file
  names; not the media URLs, whose signatures change, nor reply ids). It is not the ``message_id``: NapCat
  numbers messages afresh after its own restart, so the same message fetched again from history can carry a
  new ``message_id``; the fingerprint stays the same, so the inbox sees it once. Two identical messages by
  one member within the same second count as one.

Conversion needs names (group cards, group titles) and quoted messages, which take API calls: the caller
passes a ``Lookups`` object. Everything else here is pure.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from adapters.onebot.cqcode import Segment, normalize
from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef

PLATFORM = "onebot"
PRIVATE_PREFIX = "private:"
_MEDIA = {"image": "image", "record": "audio", "video": "video", "file": "file"}


class MalformedEvent(ValueError):
    """An event we cannot turn into a message (logged and skipped)."""


@dataclass(frozen=True, slots=True)
class Me:
    """The bot's QQ account (``self_id``) and the name an ``at`` of it is shown as in text."""

    self_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Quoted:
    """What ``get_msg`` says about a replied-to message."""

    text: str
    author_id: str
    author_name: str


class Lookups(Protocol):
    """Name and message lookups (``get_group_member_info``, ``get_group_info``, ``get_msg``), cached by the
    implementation. None of them raises: an unknown name is "" and an unknown message None."""

    async def member_name(self, group_id: str, user_id: str) -> str: ...

    async def group_name(self, group_id: str) -> str: ...

    async def quoted(self, message_id: str) -> Quoted | None: ...


def group_chat(group_id: str, title: str = "") -> ChatRef:
    return ChatRef(PLATFORM, group_id, title)


def private_chat(user_id: str, title: str = "") -> ChatRef:
    return ChatRef(PLATFORM, PRIVATE_PREFIX + user_id, title)


def target_of(chat_id: str) -> tuple[str, int]:
    """``("group", group id)`` or ``("private", user id)`` for a chat id of ours."""
    if chat_id.startswith(PRIVATE_PREFIX):
        return "private", int(chat_id[len(PRIVATE_PREFIX) :])
    return "group", int(chat_id)


def _id(value: Any, what: str) -> str:
    """A QQ number or message id as text (they arrive as numbers or strings)."""
    if isinstance(value, bool) or value is None:
        raise MalformedEvent(f"missing {what}")
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise MalformedEvent(f"{what} is not a number: {value!r}")
    return text


def fingerprint(user_id: str, time: int, segments: list[Segment]) -> str:
    """The stable digest of one message (see the module docstring)."""
    canon: list[Any] = [user_id, time]
    for seg in segments:
        data = seg["data"]
        kind = seg["type"]
        if kind == "text":
            canon.append(["t", str(data.get("text", ""))])
        elif kind == "at":
            canon.append(["at", str(data.get("qq", ""))])
        elif kind in _MEDIA:
            canon.append([kind, _file_name(data)])
        elif kind == "face":
            canon.append(["face", str(data.get("id", ""))])
        elif kind != "reply":
            canon.append([kind])
    raw = json.dumps(canon, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def _file_name(data: dict[str, Any]) -> str:
    name = str(data.get("name") or data.get("file") or "")
    if name.startswith(("http://", "https://", "base64://", "file://")):
        name = name.rsplit("/", 1)[-1][:80]
    return name


def _attachment(kind: str, data: dict[str, Any]) -> Attachment:
    name = _file_name(data) or kind
    mime = mimetypes.guess_type(name)[0] or {
        "image": "image/jpeg",
        "audio": "audio/amr",
        "video": "video/mp4",
    }.get(_MEDIA[kind], "application/octet-stream")
    size_raw = data.get("file_size") or data.get("size") or 0
    size = int(size_raw) if str(size_raw).isdigit() else 0
    url = str(data.get("url") or "")
    source = (
        url
        if url.startswith(("http://", "https://"))
        else f"{kind}:{data.get('file_id') or data.get('file') or ''}"
    )
    return Attachment(_MEDIA[kind], name, mime, size, source)


async def render(
    segments: list[Segment], me: Me, group_id: str | None, look: Lookups
) -> tuple[str, bool, str | None, tuple[Attachment, ...]]:
    """Text, whether the bot was mentioned, the replied-to message id and the attachments of a message."""
    text: list[str] = []
    mentioned = False
    reply_id: str | None = None
    attachments: list[Attachment] = []
    for seg in segments:
        kind, data = seg["type"], seg["data"]
        if kind == "text":
            text.append(str(data.get("text", "")))
        elif kind == "at":
            qq = str(data.get("qq", ""))
            if qq == me.self_id:
                mentioned = True
                text.append(f"@{me.name}")
            elif qq == "all":
                text.append("@全体成员")
            else:
                name = str(data.get("name") or "").lstrip("@")
                if not name and group_id is not None:
                    name = await look.member_name(group_id, qq)
                text.append(f"@{name or qq}")
        elif kind == "reply" and reply_id is None:
            rid = str(data.get("id", "")).strip()
            reply_id = rid or None
        elif kind in _MEDIA:
            attachments.append(_attachment(kind, data))
        elif kind == "mface" and data.get("summary"):
            text.append(str(data["summary"]))
        elif kind == "share":
            text.append(" ".join(str(data.get(k) or "") for k in ("title", "url")).strip())
    return "".join(text).strip(), mentioned, reply_id, tuple(attachments)


def _sender(raw: dict[str, Any], user_id: str) -> tuple[str, bool]:
    """The display name the event itself carries (group card first), and whether it carried one at all."""
    sender = raw.get("sender") if isinstance(raw.get("sender"), dict) else {}
    anonymous = raw.get("anonymous")
    if isinstance(anonymous, dict) and anonymous.get("name"):
        return str(anonymous["name"]), True
    card = str(sender.get("card") or "").strip()
    nick = str(sender.get("nickname") or "").strip()
    return card or nick, "card" in sender


async def to_event(raw: dict[str, Any], me: Me, look: Lookups) -> Message | None:
    """The event for one OneBot message event (live, or an item of ``get_group_msg_history``), or None
    when it carries nothing to remember. Raises ``MalformedEvent`` when an essential field is missing."""
    kind = raw.get("message_type")
    if kind not in ("group", "private"):
        raise MalformedEvent(f"unknown message_type {kind!r}")
    user_id = _id(raw.get("user_id", (raw.get("sender") or {}).get("user_id")), "user_id")
    message_id = _id(raw.get("message_id"), "message_id")
    time_raw = raw.get("time")
    if isinstance(time_raw, bool) or not isinstance(time_raw, (int, float)):
        raise MalformedEvent("missing time")
    sent_at = datetime.fromtimestamp(int(time_raw), tz=timezone.utc)
    segments = normalize(raw.get("message", raw.get("raw_message", "")))
    group_id = _id(raw.get("group_id"), "group_id") if kind == "group" else None
    text, mentioned, reply_id, attachments = await render(segments, me, group_id, look)
    if not text and not attachments:
        return None
    name, had_card = _sender(raw, user_id)
    if group_id is not None:
        if not had_card:  # history items and some implementations leave the card out: ask for it
            name = await look.member_name(group_id, user_id) or name
        chat = group_chat(group_id, await look.group_name(group_id))
    else:
        chat = private_chat(user_id, name)
    anonymous = raw.get("anonymous")
    if isinstance(anonymous, dict) and anonymous.get("id") is not None:
        author = PersonRef(PLATFORM, f"anonymous:{anonymous['id']}", name or "匿名")
    else:
        author = PersonRef(PLATFORM, user_id, name or user_id)
    reply = None
    if reply_id is not None:
        quoted = await look.quoted(reply_id)
        if quoted is None:
            reply = ReplyRef(reply_id)
        else:
            quoted_author = PersonRef(PLATFORM, quoted.author_id, quoted.author_name or quoted.author_id)
            reply = ReplyRef(reply_id, quoted.text, quoted_author)
            mentioned = mentioned or quoted.author_id == me.self_id  # a reply to the bot addresses it
    from_me = user_id == me.self_id
    return Message(
        event_id=f"{PLATFORM}:{chat.chat_id}:{fingerprint(user_id, int(time_raw), segments)}",
        id=message_id,
        chat=chat,
        author=author,
        text=text,
        sent_at=sent_at,
        reply_to=reply,
        mentions_me=mentioned and not from_me,
        is_direct=kind == "private",
        from_me=from_me,
        attachments=attachments,
        forwarded=any(s["type"] == "forward" for s in segments),
    )


RECALLS = ("group_recall", "friend_recall")


async def recall_event(raw: dict[str, Any], me: Me, look: Lookups) -> Message | None:
    """A ``group_recall`` or ``friend_recall`` notice (a message was recalled) as the core's deletion event:
    the recalled message's id, its author (``user_id``), no text."""
    user_id = _id(raw.get("user_id"), "user_id")
    message_id = _id(raw.get("message_id"), "message_id")
    time_raw = raw.get("time")
    if isinstance(time_raw, bool) or not isinstance(time_raw, (int, float)):
        raise MalformedEvent("missing time")
    if raw.get("notice_type") == "group_recall":
        group_id = _id(raw.get("group_id"), "group_id")
        chat = group_chat(group_id, await look.group_name(group_id))
        name = await look.member_name(group_id, user_id) or user_id
    else:
        chat, name = private_chat(user_id), user_id
    return Message(
        event_id=f"{PLATFORM}:{chat.chat_id}:recall:{message_id}",
        id=message_id,
        chat=chat,
        author=PersonRef(PLATFORM, user_id, name),
        text="",
        sent_at=datetime.fromtimestamp(int(time_raw), tz=timezone.utc),
        is_direct=raw.get("notice_type") == "friend_recall",
        from_me=user_id == me.self_id,
        deleted=True,
    )


async def upload_event(raw: dict[str, Any], me: Me, look: Lookups) -> Message | None:
    """A ``group_upload`` notice (a member put a file in the group's files) as a message with the file."""
    group_id = _id(raw.get("group_id"), "group_id")
    user_id = _id(raw.get("user_id"), "user_id")
    info = raw.get("file")
    if not isinstance(info, dict) or not info.get("name"):
        raise MalformedEvent("group_upload without a file")
    time_raw = raw.get("time")
    if isinstance(time_raw, bool) or not isinstance(time_raw, (int, float)):
        raise MalformedEvent("missing time")
    name = str(info["name"])
    size = int(info["size"]) if str(info.get("size", "")).isdigit() else 0
    source = f"groupfile:{group_id}:{info.get('busid', '')}:{info.get('id', '')}"
    att = Attachment("file", name, mimetypes.guess_type(name)[0] or "application/octet-stream", size, source)
    seg = [{"type": "file", "data": {"name": name}}]
    return Message(
        event_id=f"{PLATFORM}:{group_id}:{fingerprint(user_id, int(time_raw), seg)}",
        id=f"file:{info.get('id', '')}",
        chat=group_chat(group_id, await look.group_name(group_id)),
        author=PersonRef(PLATFORM, user_id, await look.member_name(group_id, user_id) or user_id),
        text="",
        sent_at=datetime.fromtimestamp(int(time_raw), tz=timezone.utc),
        attachments=(att,),
        from_me=user_id == me.self_id,
    )
