"""Telegram updates -> paibot events. Pure functions: no I/O, no SDK objects leave this module.

Identity rules for Telegram:

* ``ChatRef.chat_id`` is the chat id as text, except for a group that was upgraded to a supergroup: its
  messages keep the *old* group id as ``chat_id`` (the caller passes that mapping in as ``chat_key``), so
  the group keeps its memory across the upgrade.
* ``Message.event_id`` is ``telegram:<real chat id>:<message id>`` for a new message and gets
  ``:edit:<unix time>`` appended for an edit, so the inbox stores each edit once.
* Entity offsets are UTF-16 code units; see ``adapters.telegram.text``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from telegram import Message as TgMessage
from telegram import MessageEntity, Update
from telegram import User as TgUser

from adapters.telegram.text import message_link, utf16_slice
from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef

PLATFORM = "telegram"


class MalformedUpdate(ValueError):
    """An update we cannot turn into an event (logged and skipped by the intake loop)."""


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is on Telegram (from ``getMe``)."""

    id: int
    username: str
    name: str


@dataclass(frozen=True, slots=True)
class Migration:
    """A basic group that became a supergroup (``migrate_to_chat_id`` / ``migrate_from_chat_id``)."""

    old_chat_id: int
    new_chat_id: int


def identity_chat_key(chat_id: int) -> str:
    return str(chat_id)


def migration_of(update: Update) -> Migration | None:
    msg = update.message
    if msg is None:
        return None
    if msg.migrate_to_chat_id:
        return Migration(msg.chat.id, msg.migrate_to_chat_id)
    if msg.migrate_from_chat_id:
        return Migration(msg.migrate_from_chat_id, msg.chat.id)
    return None


def person(user: TgUser) -> PersonRef:
    name = user.full_name or user.username or str(user.id)
    return PersonRef(PLATFORM, str(user.id), name, is_bot=bool(user.is_bot))


def _author(msg: TgMessage) -> PersonRef:
    if msg.sender_chat is not None:  # anonymous admin or a channel speaking in the group
        chat = msg.sender_chat
        return PersonRef(PLATFORM, str(chat.id), chat.title or chat.username or str(chat.id))
    if msg.from_user is not None:
        return person(msg.from_user)
    raise MalformedUpdate(f"message {msg.message_id} has no sender")


def _entity_mentions_me(text: str, ent: MessageEntity, me: BotIdentity) -> bool:
    handle = f"@{me.username}".lower()
    if ent.type == MessageEntity.MENTION:
        return utf16_slice(text, ent.offset, ent.length).lower() == handle
    if ent.type == MessageEntity.TEXT_MENTION:
        return ent.user is not None and ent.user.id == me.id
    if ent.type == MessageEntity.BOT_COMMAND:
        # "/cmd@otherbot" is for another bot; a bare "/cmd" is left to the core's command rules.
        _, _, target = utf16_slice(text, ent.offset, ent.length).partition("@")
        return bool(target) and target.lower() == me.username.lower()
    return False


def mentions_me(text: str, entities: tuple[MessageEntity, ...], me: BotIdentity) -> bool:
    """Whether a mention, text mention or ``/command@us`` entity addresses the bot."""
    return any(_entity_mentions_me(text, ent, me) for ent in entities)


def _attachments(msg: TgMessage) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    if msg.photo:
        best = max(msg.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        out.append(Attachment("image", f"photo_{best.file_unique_id}.jpg", "image/jpeg", best.file_size or 0, best.file_id))
    doc = msg.document
    if doc is not None:
        mime = doc.mime_type or "application/octet-stream"
        kind = next((k for k in ("image", "audio", "video") if mime.startswith(k + "/")), "file")
        out.append(Attachment(kind, doc.file_name or f"file_{doc.file_unique_id}", mime, doc.file_size or 0, doc.file_id))
    for media, kind, default_mime, ext in (
        (msg.audio, "audio", "audio/mpeg", "mp3"),
        (msg.voice, "audio", "audio/ogg", "ogg"),
        (msg.video, "video", "video/mp4", "mp4"),
    ):
        if media is not None:
            name = getattr(media, "file_name", None) or f"{kind}_{media.file_unique_id}.{ext}"
            mime = media.mime_type or default_mime
            out.append(Attachment(kind, name, mime, media.file_size or 0, media.file_id))
    return tuple(out)


def _reply_ref(msg: TgMessage, chat_key: Callable[[int], str]) -> ReplyRef | None:
    reply = msg.reply_to_message
    if reply is None:
        return None
    quoted = msg.quote.text if msg.quote is not None and msg.quote.text else (reply.text or reply.caption or "")
    author = None
    if reply.sender_chat is not None or reply.from_user is not None:
        author = _author(reply)
    return ReplyRef(str(reply.message_id), quoted, author)


def to_event(update: Update, me: BotIdentity, chat_key: Callable[[int], str] = identity_chat_key) -> Message | None:
    """The event for one update, or None for updates that carry no chat message worth remembering
    (service messages, callback queries, member changes). Raises ``MalformedUpdate`` when a message is
    missing what every message must have."""
    msg = update.message or update.edited_message or update.channel_post or update.edited_channel_post
    if msg is None:
        return None
    if msg.chat is None or msg.date is None:
        raise MalformedUpdate(f"update {update.update_id} has a message without chat or date")
    text = msg.text or msg.caption or ""
    entities = tuple(msg.entities or ()) + tuple(msg.caption_entities or ())
    attachments = _attachments(msg)
    if not text and not attachments:
        return None
    author = _author(msg)
    chat = msg.chat
    is_topic = bool(msg.is_topic_message) and msg.message_thread_id is not None
    edited = msg.edit_date is not None
    event_id = f"{PLATFORM}:{chat.id}:{msg.message_id}"
    if edited:
        event_id += f":edit:{int(msg.edit_date.timestamp())}"  # type: ignore[union-attr]
    reply = _reply_ref(msg, chat_key)
    is_direct = chat.type == chat.PRIVATE
    return Message(
        event_id=event_id,
        id=str(msg.message_id),
        chat=ChatRef(PLATFORM, chat_key(chat.id), title=chat.title or chat.full_name or chat.username or ""),
        author=author,
        text=text,
        sent_at=msg.date,
        reply_to=reply,
        mentions_me=mentions_me(text, entities, me),
        is_direct=is_direct,
        from_me=author.user_id == str(me.id),
        thread=str(msg.message_thread_id) if is_topic else None,
        attachments=attachments,
        url=message_link(chat.id, msg.message_id, chat.username, msg.message_thread_id if is_topic else None),
        edited=edited,
        forwarded=msg.forward_origin is not None,
    )


def replies_to_me(event: Message, me: BotIdentity) -> bool:
    """Whether the event replies to one of the bot's own messages."""
    return event.reply_to is not None and event.reply_to.author is not None and event.reply_to.author.user_id == str(me.id)
