"""discord.py objects -> the core's frozen event model. SDK types end here.

Mapping rules:

* ``ChatRef.chat_id`` is the channel id; a thread's messages belong to the parent channel's chat with
  ``thread`` set to the thread's channel id (DMs: the DM channel id, ``is_direct``).
* ``event_id`` is ``discord:<message id>`` (the inbox deduplicates live and backfilled copies on it);
  edits get ``discord:<id>:edit:<edited timestamp>``, deletions ``discord:<id>:delete``; slash commands
  ``discord:interaction:<id>``.
* ``mentions_me``: a user mention of the bot, a mention of the bot's managed role, or a reply to one of the
  bot's messages (a reply addresses the bot even when the author turned the ping off).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import discord

from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef

PLATFORM = "discord"


def person(user: discord.abc.User) -> PersonRef:
    return PersonRef(PLATFORM, str(user.id), user.display_name, is_bot=bool(user.bot))


def chat_of(channel: Any) -> tuple[ChatRef, str | None, bool]:
    """(chat, thread id or None, is_direct) for a discord.py channel (or partial messageable)."""
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        title = f"#{parent.name}" if parent is not None else f"#{channel.name}"
        return ChatRef(PLATFORM, str(channel.parent_id), title=title), str(channel.id), False
    if isinstance(channel, (discord.DMChannel, discord.GroupChannel)):
        recipient = getattr(channel, "recipient", None)
        title = f"DM with {recipient.display_name}" if recipient is not None else "DM"
        return ChatRef(PLATFORM, str(channel.id), title=title), None, True
    if isinstance(channel, discord.PartialMessageable):
        is_dm = channel.type in (discord.ChannelType.private, discord.ChannelType.group)
        return ChatRef(PLATFORM, str(channel.id)), None, is_dm or channel.guild_id is None
    name = getattr(channel, "name", None)
    guild = getattr(channel, "guild", None)
    title = f"#{name}" + (f" ({guild.name})" if guild is not None else "") if name else ""
    return ChatRef(PLATFORM, str(channel.id), title=title), None, False


def attachment_of(att: discord.Attachment) -> Attachment:
    mime = att.content_type or "application/octet-stream"
    major = mime.split("/", 1)[0]
    kind = major if major in ("image", "audio", "video") else "file"
    return Attachment(kind=kind, name=att.filename, mime=mime, size=att.size, source=att.url)


def _reply_of(msg: discord.Message, me_id: int) -> tuple[ReplyRef | None, bool]:
    ref = msg.reference
    if ref is None or ref.message_id is None or ref.type is discord.MessageReferenceType.forward:
        return None, False
    resolved = ref.resolved
    if isinstance(resolved, discord.Message):
        quoted = resolved.clean_content or resolved.content
        return ReplyRef(str(ref.message_id), quoted, person(resolved.author)), resolved.author.id == me_id
    return ReplyRef(str(ref.message_id)), False


def message_from_discord(msg: discord.Message, *, me_id: int, my_role_ids: Collection[int] = (),
                         edit: bool = False) -> Message:
    """The core's view of a discord.py message. ``edit`` gives the edit its own event id."""
    chat, thread, is_direct = chat_of(msg.channel)
    reply, replies_to_me = _reply_of(msg, me_id)
    forwarded = msg.reference is not None and msg.reference.type is discord.MessageReferenceType.forward
    text = msg.clean_content if msg.content else ""
    if forwarded and not text and msg.message_snapshots:
        text = msg.message_snapshots[0].content
    mentions_me = (
        any(u.id == me_id for u in msg.mentions)
        or any(rid in my_role_ids for rid in msg.raw_role_mentions)
        or replies_to_me
    )
    event_id = f"{PLATFORM}:{msg.id}"
    if edit and msg.edited_at is not None:
        event_id += f":edit:{msg.edited_at.isoformat()}"
    return Message(
        event_id=event_id,
        id=str(msg.id),
        chat=chat,
        author=person(msg.author),
        text=text,
        sent_at=msg.created_at,
        reply_to=reply,
        mentions_me=mentions_me,
        is_direct=is_direct,
        from_me=msg.author.id == me_id,
        thread=thread,
        attachments=tuple(attachment_of(a) for a in msg.attachments),
        url=msg.jump_url,
        edited=edit,
        forwarded=forwarded,
    )


def command_text(interaction: discord.Interaction) -> str:
    """``/name value ...`` for a slash-command interaction (sub-commands flattened in order)."""
    data: dict[str, Any] = dict(interaction.data or {})
    words = [f"/{data.get('name', '')}"]

    def walk(options: list[dict[str, Any]]) -> None:
        for opt in options:
            if opt.get("type") in (1, 2):  # sub-command / group
                words.append(str(opt.get("name", "")))
                walk(opt.get("options", []))
            elif opt.get("value") not in (None, ""):
                words.append(str(opt["value"]))

    walk(list(data.get("options", [])))
    return " ".join(w for w in words if w)


def message_from_interaction(interaction: discord.Interaction) -> Message:
    """A slash command as a message addressed to the bot."""
    channel = interaction.channel
    if channel is not None:
        chat, thread, is_direct = chat_of(channel)
    else:
        chat, thread, is_direct = ChatRef(PLATFORM, str(interaction.channel_id)), None, interaction.guild_id is None
    return Message(
        event_id=f"{PLATFORM}:interaction:{interaction.id}",
        id=str(interaction.id),
        chat=chat,
        author=person(interaction.user),
        text=command_text(interaction),
        sent_at=interaction.created_at,
        mentions_me=True,
        is_direct=is_direct or interaction.guild_id is None,
        thread=thread,
    )


def deletion_event(payload: discord.RawMessageDeleteEvent, me_id: int) -> Message:
    """A deleted message, as the core's deletion event. Its author is known only when discord.py had the
    message cached; a thread's message is keyed by the thread's channel when the parent is not known."""
    cached = payload.cached_message
    if cached is not None:
        chat, thread, is_direct = chat_of(cached.channel)
        author, from_me = person(cached.author), cached.author.id == me_id
    else:
        chat, thread, is_direct = ChatRef(PLATFORM, str(payload.channel_id)), None, payload.guild_id is None
        author, from_me = PersonRef(PLATFORM, "", ""), False
    return Message(
        event_id=f"{PLATFORM}:{payload.message_id}:delete",
        id=str(payload.message_id),
        chat=chat,
        author=author,
        text="",
        sent_at=discord.utils.snowflake_time(payload.message_id),
        is_direct=is_direct,
        from_me=from_me,
        thread=thread,
        deleted=True,
    )
