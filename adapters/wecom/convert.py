"""WeCom AI bot callbacks -> paibot events. Pure functions.

Identity rules for WeCom (platform ``wecom``):

* A group's ``ChatRef.chat_id`` is its ``chatid``; a direct chat's is ``single:<userid>``.
* A member is ``PersonRef("wecom", "<userid>", "<userid>")``: callbacks carry no display name.
* ``Message.id`` is the callback's ``msgid``; ``event_id`` is ``wecom:<msgid>`` (WeCom retries a callback
  that was not answered in time with the same msgid).

WeCom delivers only what is addressed to the bot: group messages that @mention it and direct messages. So
every group message is ``mentions_me``; its ``@<bot name>`` is rewritten to ``@<bot.name>`` so the core's
name rules and memory read it like any other mention. Quotes carry no message id: ``ReplyRef("")`` with the
quoted text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef

PLATFORM = "wecom"
SINGLE_PREFIX = "single:"
MESSAGE_TYPES = ("text", "mixed", "image", "file", "voice")


class MalformedCallback(ValueError):
    pass


def _text_of(kind: str, body: Any) -> tuple[str, list[Attachment]]:
    """Text and attachments of one message body (``text``/``image``/``mixed``/``voice``/``file``)."""
    if not isinstance(body, dict):
        return "", []
    if kind == "text":
        return str(body.get("content") or ""), []
    if kind == "voice":  # WeCom hands over the transcript
        return str(body.get("content") or ""), []
    if kind in ("image", "file"):
        url = str(body.get("url") or "")
        if not url:
            return "", []
        name = "image.jpg" if kind == "image" else str(body.get("filename") or body.get("name") or "file")
        mime = "image/jpeg" if kind == "image" else "application/octet-stream"
        key = str(body.get("aeskey") or "")  # a per-file key, where WeCom gives one (else the bot's key)
        return "", [Attachment(kind, name, mime, 0, f"{url}#aeskey={key}" if key else url)]
    if kind == "mixed":
        texts: list[str] = []
        atts: list[Attachment] = []
        for item in body.get("msg_item") or []:
            if isinstance(item, dict):
                sub = str(item.get("msgtype") or "")
                t, a = _text_of(sub, item.get(sub))
                if t:
                    texts.append(t)
                atts.extend(a)
        return "\n".join(texts), atts
    return "", []


def _strip_mention(text: str, names: tuple[str, ...], bot_name: str) -> str:
    for name in names:
        if name and f"@{name}" in text:
            return text.replace(f"@{name}", f"@{bot_name}", 1)
    m = re.match(r"\s*@\S+\s*", text)  # WeCom puts the mention first
    return f"@{bot_name} " + text[m.end() :] if m else text


def to_event(payload: dict[str, Any], now: datetime, bot_name: str, mention_name: str = "") -> Message | None:
    """The event for one message callback; None for kinds we do not read. ``now`` is when it arrived (the
    callback has no time)."""
    kind = payload.get("msgtype")
    if kind not in MESSAGE_TYPES:
        return None
    msgid = str(payload.get("msgid") or "")
    sender = payload.get("from") if isinstance(payload.get("from"), dict) else {}
    userid = str(sender.get("userid") or "")
    if not msgid or not userid:
        raise MalformedCallback("a message callback without msgid or from.userid")
    group = payload.get("chattype") == "group"
    text, attachments = _text_of(kind, payload.get(kind))
    if group:
        chatid = str(payload.get("chatid") or "")
        if not chatid:
            raise MalformedCallback("a group message without chatid")
        chat = ChatRef(PLATFORM, chatid)
        text = _strip_mention(text, (mention_name, bot_name), bot_name)
    else:
        chat = ChatRef(PLATFORM, SINGLE_PREFIX + userid, userid)
    reply = None
    quote = payload.get("quote")
    if isinstance(quote, dict):
        qkind = str(quote.get("msgtype") or "")
        qtext, _ = _text_of(qkind, quote.get(qkind))
        reply = ReplyRef("", qtext)
    if not text.strip() and not attachments:
        return None
    return Message(
        event_id=f"{PLATFORM}:{msgid}",
        id=msgid,
        chat=chat,
        author=PersonRef(PLATFORM, userid, userid),
        text=text.strip(),
        sent_at=now,
        reply_to=reply,
        mentions_me=group,
        is_direct=not group,
        attachments=tuple(attachments),
    )
