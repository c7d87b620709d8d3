"""Raw Matrix room events -> core ``Message`` values. Pure: the adapter gathers the facts (room, the replied
event), this module decides what the core sees.

We convert from the raw event dicts (``event.source`` in nio), not nio's typed events, so an event nio does
not model (or models differently across versions) still converts the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from adapters.matrix.format import (
    matrix_to,
    mentions_user_link,
    normalise_command,
    strip_reply_fallback,
    strip_reply_fallback_html,
)
from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef

PLATFORM = "matrix"
MEDIA_KINDS = {"m.image": "image", "m.file": "file", "m.audio": "audio", "m.video": "video"}
TEXT_TYPES = ("m.text", "m.notice", "m.emote")
QUOTE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Me:
    """Who the bot is on this homeserver and how it is addressed."""

    user_id: str
    display_names: tuple[str, ...] = ()
    command_prefixes: tuple[str, ...] = ("!", "/")
    core_prefix: str = "/"


@dataclass(frozen=True, slots=True)
class RoomFacts:
    room_id: str
    title: str
    is_direct: bool
    names: dict[str, str]  # user id -> display name, as far as known


@dataclass(frozen=True, slots=True)
class Quoted:
    """The event a message replies to, as fetched by the adapter."""

    event_id: str
    sender: str
    text: str


def relation(content: dict[str, Any]) -> dict[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, dict) else {}


def replied_event_id(event: dict[str, Any]) -> str | None:
    """The id of the event this one replies to (``m.in_reply_to``), if any."""
    content = event.get("content") or {}
    rel = relation(content)
    if rel.get("rel_type") == "m.replace":
        rel = relation(content.get("m.new_content") or {}) or {}
    reply = rel.get("m.in_reply_to")
    if isinstance(reply, dict) and isinstance(reply.get("event_id"), str):
        # Thread fallbacks point m.in_reply_to at the latest thread event; that is not a real reply.
        if rel.get("rel_type") == "m.thread" and rel.get("is_falling_back"):
            return None
        return reply["event_id"]
    return None


def quoted_text(event: dict[str, Any]) -> str:
    """The readable text of a replied-to event (fallback stripped, shortened)."""
    content = event.get("content") or {}
    body = content.get("body") if isinstance(content.get("body"), str) else ""
    if replied_event_id(event):
        body = strip_reply_fallback(body)
    return body[:QUOTE_CHARS]


def _person(user_id: str, room: RoomFacts, me: Me) -> PersonRef:
    name = room.names.get(user_id) or user_id[1:].split(":", 1)[0]
    return PersonRef(PLATFORM, user_id, name, is_bot=user_id == me.user_id)


def _name_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    usable = [re.escape(n) for n in names if len(n) >= 2]
    if not usable:
        return None
    return re.compile(rf"(?<![\w]){'|'.join(usable)}(?!\w)", re.IGNORECASE)


def mentions_me(content: dict[str, Any], body: str, formatted: str, me: Me) -> bool:
    """Intentional mentions (``m.mentions.user_ids``), a pill linking the bot, the bot's id, or its display
    name as a whole word in the body."""
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
    if isinstance(user_ids, list) and me.user_id in user_ids:
        return True
    if mentions_user_link(formatted, me.user_id) or mentions_user_link(body, me.user_id):
        return True
    if me.user_id in body:
        return True
    pattern = _name_pattern(me.display_names)
    return bool(pattern and pattern.search(body))


def _attachment(content: dict[str, Any], kind: str) -> Attachment | None:
    url = content.get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        return None  # encrypted media ("file" instead of "url") cannot be read without E2EE
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    name = content.get("filename") or content.get("body") or "file"
    size = info.get("size")
    return Attachment(
        kind=kind,
        name=str(name)[:200],
        mime=str(info.get("mimetype") or "application/octet-stream"),
        size=size if isinstance(size, int) and size >= 0 else 0,
        source=url,
    )


def to_message(event: dict[str, Any], room: RoomFacts, me: Me,
               quoted: Quoted | None = None) -> Message | None:
    """The core message for a room event, or None when it is not a (readable) chat message."""
    if event.get("type") != "m.room.message":
        return None
    event_id, sender = event.get("event_id"), event.get("sender")
    outer = event.get("content") or {}
    if not isinstance(event_id, str) or not isinstance(sender, str) or not isinstance(outer, dict):
        return None
    rel = relation(outer)
    edited = rel.get("rel_type") == "m.replace" and isinstance(rel.get("event_id"), str)
    content = outer.get("m.new_content") if edited else outer
    if not isinstance(content, dict):
        return None
    msgtype = content.get("msgtype")
    body = content.get("body") if isinstance(content.get("body"), str) else ""
    formatted = content.get("formatted_body") if isinstance(content.get("formatted_body"), str) else ""
    if not isinstance(msgtype, str) or (msgtype not in TEXT_TYPES and msgtype not in MEDIA_KINDS):
        return None
    if replied_event_id(event):
        body, formatted = strip_reply_fallback(body), strip_reply_fallback_html(formatted)

    attachments: tuple[Attachment, ...] = ()
    text = body
    if msgtype in MEDIA_KINDS:
        att = _attachment(content, MEDIA_KINDS[msgtype])
        attachments = (att,) if att else ()
        # A caption exists only when a separate filename is given (the body is then the caption).
        text = body if content.get("filename") and content.get("filename") != body else ""
    elif msgtype == "m.emote":
        text = f"* {_person(sender, room, me).display_name} {body}"

    reply_ref = None
    to_me = False
    if quoted is not None:
        author = _person(quoted.sender, room, me) if quoted.sender else None  # unknown when unreadable
        reply_ref = ReplyRef(quoted.event_id, quoted.text, author)
        to_me = quoted.sender == me.user_id and sender != me.user_id
    # An edit's outer relation is the m.replace; the thread of an edited message is not repeated in it.
    thread = rel.get("event_id") if rel.get("rel_type") == "m.thread" else None
    sent_at = _sent_at(event)
    message_id = rel["event_id"] if edited else event_id
    return Message(
        event_id=f"{PLATFORM}:{event_id}",
        id=message_id,
        chat=ChatRef(PLATFORM, room.room_id, title=room.title),
        author=_person(sender, room, me),
        text=normalise_command(text, me.command_prefixes, me.core_prefix),
        sent_at=sent_at,
        reply_to=reply_ref,
        mentions_me=sender != me.user_id and (to_me or mentions_me(content, body, formatted, me)),
        is_direct=room.is_direct,
        from_me=sender == me.user_id,
        thread=thread if isinstance(thread, str) else None,
        attachments=attachments,
        url=matrix_to(room.room_id, message_id),
        edited=edited,
    )


def _sent_at(event: dict[str, Any]) -> datetime:
    ts = event.get("origin_server_ts")
    now = datetime.now(timezone.utc)
    if isinstance(ts, int):
        try:
            return datetime.fromtimestamp(ts / 1000, timezone.utc)
        except (OverflowError, OSError, ValueError):  # a timestamp out of any calendar's range
            return now
    return now


def to_deletion(event: dict[str, Any], room: RoomFacts, me: Me) -> Message | None:
    """The core's deletion event for an ``m.room.redaction`` (``redacts`` at the top level, or in the content
    from room version 11), or None when it names no event."""
    if event.get("type") != "m.room.redaction":
        return None
    event_id, sender = event.get("event_id"), event.get("sender")
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    redacts = event.get("redacts") or content.get("redacts")
    if not isinstance(event_id, str) or not isinstance(sender, str) or not isinstance(redacts, str):
        return None
    return Message(
        event_id=f"{PLATFORM}:{event_id}",
        id=redacts,
        chat=ChatRef(PLATFORM, room.room_id, title=room.title),
        author=_person(sender, room, me),
        text="",
        sent_at=_sent_at(event),
        is_direct=room.is_direct,
        from_me=sender == me.user_id,
        deleted=True,
    )
