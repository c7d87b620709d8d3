"""Chat history importers: JSONL, a Telegram Desktop export (``result.json``, one chat or the whole account)
and DiscordChatExporter JSON.

Imported records carry the identities the live adapters produce, so a member is one person whether her
messages came live or from an export, and ``/forget-me`` forgets both: Telegram's ``user719119535`` becomes
``719119535`` (``channel<n>`` becomes ``-100<n>``, ``chat<n>`` ``-<n>``); message ids are the platform's,
qualified by chat in a pai that bridges several chats (``<chat key>#<id>``) exactly like live records. A
JSONL file's own ids are not platform ids: they live in a namespace of their own (``import:<id>``), so they
can never collide with (and be overwritten by) live messages.

Each importer yields ``MemoryRecord``s, ``Skipped`` (an empty record, a service message, a kind of message
the importer does not know) and ``ImportProblem``s (a malformed record, by line or message number) in file
order. Refused as a whole, with ``FormatError`` (one clear line): a file of another format, a full-account
export without ``--chat``, and a time without a time zone when no ``--tz`` was given (never taken as UTC).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from bot.errors import MemoryError_
from bot.ports import MemoryRecord

FORMATS = ("jsonl", "telegram", "discord")
JSONL_NAMESPACE = "import:"
PROBE_LINES = 20  # a JSONL file whose first lines hold no record at all is not a chat history


class FormatError(MemoryError_):
    """The file cannot be imported as asked (wrong format, ambiguous chat, times without a zone)."""


@dataclass(frozen=True, slots=True)
class ImportProblem:
    where: str  # "line 12" / "message 40"
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record left out on purpose: ``empty``, ``service`` (joins, pins) or ``kind <name>`` (unknown)."""

    why: str


@dataclass(frozen=True, slots=True)
class ImportTarget:
    """Where records go and how to read them: the group and its pai, the zone of naive times (``--tz``) and,
    for a full-account Telegram export, the chat to take (``--chat``, a name or an id)."""

    group_key: str
    pai: str
    tz: tzinfo | None = None
    chat: str | None = None

    def record_id(self, local_id: str) -> str:
        """The id a live record of this message would have (qualified in a pai that bridges chats)."""
        return local_id if self.pai == self.group_key else f"{self.group_key}#{local_id}"


Parsed = MemoryRecord | ImportProblem | Skipped


class NaiveTime(ValueError):
    pass


def parse_time(value: Any, tz: tzinfo | None = None) -> datetime:
    """ISO 8601 or Unix seconds. A naive ISO time takes ``tz``; without one it is refused (``NaiveTime``)."""
    if isinstance(value, bool):
        raise ValueError("a time, not a boolean")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if dt.tzinfo is not None:
        return dt
    if tz is None:
        raise NaiveTime(f"the time {value.strip()!r} has no time zone")
    return dt.replace(tzinfo=tz)


def telegram_user_id(from_id: Any) -> str | None:
    """A Telegram export's ``from_id`` as the Bot API (and so the live adapter) writes the id."""
    if from_id is None or from_id == "":
        return None
    raw = str(from_id)
    for prefix, live in (("user", ""), ("channel", "-100"), ("chat", "-")):
        if raw.startswith(prefix) and raw[len(prefix):].isdigit():
            return live + raw[len(prefix):]
    return raw


# ---------------------------------------------------------------------- formats


def detect_format(path: Path) -> tuple[str, Any]:
    """The file's format, read from its structure; returns ``(format, parsed JSON or None)``."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl", None
    with path.open("rb") as fh:
        start = fh.read(64).lstrip()
    if not start.startswith((b"{", b"[")):
        raise FormatError(f"{path} is not a chat history paibot can read (JSONL, Telegram or Discord JSON export)")
    try:
        data = load_json(path)
    except FormatError:
        return "jsonl", None  # several JSON values: one per line
    if isinstance(data, dict):
        if isinstance(data.get("messages"), list) and ("guild" in data or "channel" in data):
            return "discord", data
        if isinstance(data.get("messages"), list) or isinstance(data.get("chats"), dict):
            return "telegram", data
        if {"id", "author", "text", "sent_at"} <= data.keys():
            return "jsonl", None  # a one-line JSONL file
    raise FormatError(f"{path} is JSON but neither a Telegram nor a DiscordChatExporter export; give --format")


def load_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path} is not a JSON export: {exc}") from exc


def count_items(path: Path, fmt: str) -> int | None:
    """How many lines/messages the file holds (for the progress bar), if cheap to know."""
    if fmt == "jsonl":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    return None


def read_records(path: Path, fmt: str, target: ImportTarget, data: Any = None) -> Iterator[Parsed]:
    """The records of ``path`` (``data``: its JSON when ``detect_format`` parsed it already)."""
    if fmt not in FORMATS:
        raise MemoryError_(f"unknown import format {fmt!r} (use one of {', '.join(FORMATS)})")
    try:
        if fmt == "jsonl":
            yield from _jsonl(path, target)
        else:
            reader = _telegram if fmt == "telegram" else _discord
            yield from reader(path, load_json(path) if data is None else data, target)
    except OSError as exc:
        raise MemoryError_(f"cannot read {path}: {exc}") from exc
    except NaiveTime as exc:
        hint = "give the zone the export was written in, e.g. --tz Europe/Berlin"
        raise FormatError(f"{path}: {exc}; {hint}") from exc


def _record(target: ImportTarget, local_id: Any, author_id: Any, author: Any, text: Any, when: datetime,
            reply_to: Any = None, is_bot: bool = False, kind: str = "message") -> MemoryRecord:  # fmt: skip
    if local_id is None or str(local_id) == "":
        raise ValueError("missing id")
    if not isinstance(author, str) or not author:
        raise ValueError("missing author")
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    return MemoryRecord(
        id=target.record_id(str(local_id)), pai=target.pai, chat_key=target.group_key,
        author_id=str(author_id or author), author_name=author, text=text, sent_at=when, kind=kind,
        reply_to_id=str(reply_to) if reply_to not in (None, "") else None, is_bot=is_bot,
    )  # fmt: skip


# ---------------------------------------------------------------------- JSONL


def jsonl_id(value: Any) -> str:
    text = str(value)
    return text if text.startswith(JSONL_NAMESPACE) else f"{JSONL_NAMESPACE}{text}"


def _jsonl(path: Path, target: ImportTarget) -> Iterator[Parsed]:
    held: list[ImportProblem] = []  # problems before the first record: a file of another kind says so once
    seen_record = False
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            item = _jsonl_line(line, n, target)
            if isinstance(item, ImportProblem) and not seen_record:
                held.append(item)
                if len(held) >= PROBE_LINES:
                    break
                continue
            if not seen_record and not isinstance(item, ImportProblem):
                seen_record = True
                yield from held
            yield item
    if not seen_record and held:
        first = held[0]
        raise FormatError(f"{path} does not look like a JSONL chat history ({first.where}: {first.reason})")


def _jsonl_line(line: str, n: int, target: ImportTarget) -> Parsed:
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("expected a JSON object")
        for key in ("id", "author", "text", "sent_at"):
            if key not in obj:
                raise ValueError(f"missing {key!r}")
        if isinstance(obj["text"], str) and not obj["text"].strip():
            return Skipped("empty")
        reply = obj.get("reply_to")
        return _record(
            target, jsonl_id(obj["id"]), obj.get("author_id"), obj["author"], obj["text"],
            parse_time(obj["sent_at"], target.tz), jsonl_id(reply) if reply not in (None, "") else None,
            bool(obj.get("is_bot", False)), str(obj.get("kind") or "message"),
        )  # fmt: skip
    except NaiveTime:
        raise
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return ImportProblem(f"line {n}", str(exc))


# ---------------------------------------------------------------------- Telegram Desktop


def _telegram_text(value: Any) -> str:
    """Telegram exports text as a string or a list of strings and entity objects; a link whose text is not
    its target keeps the target: ``text (https://...)``."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError("text is neither a string nor a list of text parts")
    out: list[str] = []
    for part in value:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict):
            text = str(part.get("text", ""))
            href = part.get("href")
            out.append(f"{text} ({href})" if href and href != text else text)
    return "".join(out)


def _telegram_chat(path: Path, data: Any, want: str | None) -> dict[str, Any]:
    """The one chat of a chat export, or the ``--chat`` of a full-account export."""
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return data
    listing = data.get("chats") if isinstance(data, dict) else None
    chats = listing.get("list") if isinstance(listing, dict) else None
    if not isinstance(chats, list):
        raise FormatError(f"{path} does not look like a Telegram Desktop export (no 'messages' list)")
    chats = [c for c in chats if isinstance(c, dict) and isinstance(c.get("messages"), list)]
    if want is not None:
        key = want.strip().casefold()
        found = [c for c in chats if str(c.get("name", "")).casefold() == key or str(c.get("id")) == want.strip()
                 or str(c.get("id")) == want.strip().removeprefix("-100").removeprefix("-")]  # fmt: skip
        if len(found) == 1:
            return found[0]
        what = "no chat" if not found else f"{len(found)} chats"
        raise FormatError(f"{path} holds {what} named or numbered {want!r}; chats: {_names(chats)}")
    if len(chats) == 1:
        return chats[0]
    raise FormatError(f"{path} is a whole-account export with {len(chats)} chats: pick one with --chat NAME or "
                      f"--chat ID (chats: {_names(chats)})")  # fmt: skip


def _names(chats: list[dict[str, Any]], most: int = 8) -> str:
    names = [f"{c.get('name') or '?'} ({c.get('id')})" for c in chats[:most]]
    return ", ".join(names) + (f" and {len(chats) - most} more" if len(chats) > most else "")


def _telegram_body(m: dict[str, Any]) -> str:
    """The text of a message with what a reader would see of it: forwards, stickers, polls, media."""
    text = _telegram_text(m.get("text", ""))
    if m.get("forwarded_from"):
        text = f"[forwarded from {m['forwarded_from']}] {text}".strip()
    if m.get("media_type") == "sticker":
        text = f"{text} [sticker {m.get('sticker_emoji', '')}]".replace(" ]", "]").strip()
    elif m.get("photo") or m.get("file"):
        label = m.get("file_name") or m.get("media_type") or "photo"
        text = f"{text} [shares {label}]".strip()
    poll = m.get("poll")
    if isinstance(poll, dict) and poll.get("question"):
        answers = " / ".join(str(a.get("text", "")) for a in poll.get("answers") or [] if isinstance(a, dict))
        text = f"{text} [poll: {poll['question']}{': ' + answers if answers else ''}]".strip()
    return text


def _telegram(path: Path, data: Any, target: ImportTarget) -> Iterator[Parsed]:
    chat = _telegram_chat(path, data, target.chat)
    for n, m in enumerate(chat["messages"], 1):
        try:
            if not isinstance(m, dict):
                raise ValueError("expected an object")
            kind = m.get("type", "message")
            if kind != "message":
                yield Skipped("service" if kind == "service" else f"kind {kind}")
                continue
            text = _telegram_body(m)
            if not text.strip():
                yield Skipped("empty")
                continue
            when = parse_time(m.get("date_unixtime") or m.get("date"), target.tz)
            author = m.get("from") or m.get("actor") or "unknown"
            author_id = telegram_user_id(m.get("from_id") or m.get("actor_id"))
            yield _record(target, m.get("id"), author_id, author, text, when, m.get("reply_to_message_id"))
        except NaiveTime:
            raise
        except ValueError as exc:
            yield ImportProblem(f"message {n}", str(exc))


# ---------------------------------------------------------------------- DiscordChatExporter

DISCORD_CONTENT = frozenset({"Default", "Reply", "ChatInputCommand", "ContextMenuCommand"})
DISCORD_SERVICE = frozenset({
    "RecipientAdd", "RecipientRemove", "Call", "ChannelNameChange", "ChannelIconChange", "ChannelPinnedMessage",
    "GuildMemberJoin", "ThreadCreated", "ChannelFollowAdd", "UserPremiumGuildSubscription",
    "UserPremiumGuildSubscriptionTier1", "UserPremiumGuildSubscriptionTier2", "UserPremiumGuildSubscriptionTier3",
    "GuildDiscoveryDisqualified", "GuildDiscoveryRequalified", "ThreadStarterMessage", "AutoModerationAction",
})  # fmt: skip


def _discord(path: Path, data: Any, target: ImportTarget) -> Iterator[Parsed]:
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise FormatError(f"{path} does not look like a DiscordChatExporter JSON export (no 'messages' list)")
    for n, m in enumerate(data["messages"], 1):
        try:
            if not isinstance(m, dict) or not isinstance(m.get("author"), dict):
                raise ValueError("expected an object with an author")
            kind = str(m.get("type", "Default"))
            if kind not in DISCORD_CONTENT:
                yield Skipped("service" if kind in DISCORD_SERVICE else f"kind {kind}")
                continue
            a = m["author"]
            text = m.get("content", "")
            names = [att.get("fileName", "file") for att in m.get("attachments") or [] if isinstance(att, dict)]
            if names:
                text = f"{text} [shares {', '.join(names)}]".strip()
            stickers = [s.get("name", "") for s in m.get("stickers") or [] if isinstance(s, dict)]
            if stickers:
                text = f"{text} [sticker {', '.join(stickers)}]".strip()
            if isinstance(text, str) and not text.strip():
                yield Skipped("empty")
                continue
            ref = m.get("reference") or {}
            author = a.get("nickname") or a.get("name") or ""
            yield _record(
                target, m.get("id"), a.get("id"), author, text, parse_time(m.get("timestamp"), target.tz),
                ref.get("messageId") if isinstance(ref, dict) else None, bool(a.get("isBot", False)),
            )  # fmt: skip
        except NaiveTime:
            raise
        except ValueError as exc:
            yield ImportProblem(f"message {n}", str(exc))
