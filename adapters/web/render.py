"""How the web group's API shows a message (JSON), and how an ``Outgoing.poll`` is stored.

A message's JSON is what the page draws and what scripts read:

    {"id", "group", "author", "author_name", "author_id", "is_bot", "text", "sent_at", "edited", "removed",
     "reply_to": {"id", "author", "is_bot", "text", "removed", "image": "/api/files/<id>" | null} | null,
     "files": [{"id", "name", "mime", "kind": "image"|"file", "size", "url": "/api/files/<id>"}],
     "poll": {"question", "options", "multiple", "closes_at" | null, "vote_text": "vote {n}"} | null}

A poll is voted by replying to its message with ``vote_text`` (``{n}`` the 1-based option number); the
page's buttons do exactly that. A forgotten message (``removed``) has no text, author name, files or poll:
the page shows "message removed" in its place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from adapters.web.attachments import file_json
from adapters.web.store import StoredFile, StoredMessage, StoredPoll
from bot.events import Outgoing

QUOTE_CHARS = 300
VOTE_TEXT = "vote {n}"


def message_json(
    msg: StoredMessage,
    target: StoredMessage | None,
    files: Sequence[StoredFile],
    poll: StoredPoll | None,
    target_files: Sequence[StoredFile] = (),
) -> dict[str, Any]:
    reply = None
    if target is not None:
        images = [file_json(f) for f in target_files]
        image = next((f["url"] for f in images if f["kind"] == "image"), None)  # a reply to a photo shows it
        reply = {"id": target.id, "author": target.author_name, "is_bot": target.is_bot,
                 "text": target.text[:QUOTE_CHARS], "image": image, "removed": target.removed}  # fmt: skip
    if msg.removed:
        files, poll = (), None
    return {
        "id": msg.id,
        "group": msg.group,
        "author": msg.author_name,
        "author_name": msg.author_name,
        "author_id": msg.author_id,
        "is_bot": msg.is_bot,
        "text": msg.text,
        "sent_at": msg.sent_at.isoformat(),
        "reply_to": reply,
        "edited": msg.edited,
        "removed": msg.removed,
        "files": [file_json(f) for f in files],
        "poll": poll_json(poll),
    }


def poll_row(out: Outgoing, now: datetime) -> StoredPoll | None:
    """The poll to store with the bot's message (its id filled in by the store), or None."""
    if out.poll is None:
        return None
    p = out.poll
    closes = now + timedelta(seconds=p.close_after_s) if p.close_after_s else None
    return StoredPoll(0, p.question, tuple(p.options), p.multiple, closes)


def poll_json(poll: StoredPoll | None) -> dict[str, Any] | None:
    if poll is None:
        return None
    return {
        "question": poll.question,
        "options": list(poll.options),
        "multiple": poll.multiple,
        "closes_at": poll.closes_at.isoformat() if poll.closes_at else None,
        "vote_text": VOTE_TEXT,
    }
