"""Chat history importers: JSONL, a Telegram Desktop export (``result.json``) and DiscordChatExporter JSON.

Each importer yields ``MemoryRecord``s or ``ImportProblem``s in file order: a malformed line or message is a
value naming where it is (line number for JSONL, message number for JSON exports) and why, never an
exception that stops the import. Only an unreadable file raises (``bot.errors.MemoryError_``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bot.errors import MemoryError_
from bot.ports import MemoryRecord

FORMATS = ("jsonl", "telegram", "discord")


@dataclass(frozen=True, slots=True)
class ImportProblem:
    where: str  # "line 12" / "message 40"
    reason: str


Parsed = MemoryRecord | ImportProblem


def parse_time(value: Any) -> datetime:
    """ISO 8601 (naive = UTC) or Unix seconds."""
    if isinstance(value, bool):
        raise ValueError("a time, not a boolean")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time: {value!r}")
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def guess_format(path: Path) -> str:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError as exc:
        raise MemoryError_(f"cannot read {path}: {exc}") from exc
    if '"guild"' in head or '"channel"' in head:
        return "discord"
    if head.lstrip().startswith("{") and ('"messages"' in head or '"chats"' in head):
        return "telegram"
    return "jsonl"


def count_items(path: Path, fmt: str) -> int | None:
    """How many lines/messages the file holds (for the progress bar), if cheap to know."""
    if fmt == "jsonl":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    return None


def read_records(path: Path, fmt: str, group_key: str, pai: str) -> Iterator[Parsed]:
    readers = {"jsonl": _jsonl, "telegram": _telegram, "discord": _discord}
    if fmt not in readers:
        raise MemoryError_(f"unknown import format {fmt!r} (use one of {', '.join(FORMATS)})")
    try:
        yield from readers[fmt](path, group_key, pai)
    except OSError as exc:
        raise MemoryError_(f"cannot read {path}: {exc}") from exc


def _record(pai: str, chat: str, rid: Any, author_id: Any, author: Any, text: Any, when: datetime,
            reply_to: Any = None, is_bot: bool = False, kind: str = "message") -> MemoryRecord:  # fmt: skip
    if rid is None or str(rid) == "":
        raise ValueError("missing id")
    if not isinstance(author, str) or not author:
        raise ValueError("missing author")
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    return MemoryRecord(
        id=str(rid), pai=pai, chat_key=chat, author_id=str(author_id or author), author_name=author, text=text,
        sent_at=when, kind=kind, reply_to_id=str(reply_to) if reply_to not in (None, "") else None,
        is_bot=is_bot,
    )  # fmt: skip


def _jsonl(path: Path, chat: str, pai: str) -> Iterator[Parsed]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("expected a JSON object")
                for key in ("id", "author", "text", "sent_at"):
                    if key not in obj:
                        raise ValueError(f"missing {key!r}")
                yield _record(
                    pai, chat, obj["id"], obj.get("author_id"), obj["author"], obj["text"],
                    parse_time(obj["sent_at"]), obj.get("reply_to"), bool(obj.get("is_bot", False)),
                    str(obj.get("kind") or "message"),
                )  # fmt: skip
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                yield ImportProblem(f"line {n}", str(exc))


def _load_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MemoryError_(f"{path} is not a JSON export: {exc}") from exc


def _telegram_text(value: Any) -> str:
    """Telegram exports text as a string or a list of strings and entity objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in value if p is not None)
    raise ValueError("text is neither a string nor a list of text parts")


def _telegram(path: Path, chat: str, pai: str) -> Iterator[Parsed]:
    data = _load_json(path)
    if isinstance(data, dict) and "messages" not in data and isinstance(data.get("chats"), dict):
        chats = data["chats"].get("list", [])
        if len(chats) != 1:
            raise MemoryError_(f"{path} holds {len(chats)} chats; export the one group you want to import")
        data = chats[0]
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise MemoryError_(f"{path} does not look like a Telegram Desktop export (no 'messages' list)")
    for n, m in enumerate(data["messages"], 1):
        try:
            if not isinstance(m, dict):
                raise ValueError("expected an object")
            if m.get("type", "message") != "message":
                continue  # service messages (joins, pins) are not conversation
            text = _telegram_text(m.get("text", ""))
            if m.get("photo") or m.get("file"):
                label = m.get("file_name") or m.get("media_type") or "photo"
                text = f"{text} [shares {label}]".strip()
            when = parse_time(m.get("date_unixtime") or m.get("date"))
            author = m.get("from") or m.get("actor") or "unknown"
            yield _record(pai, chat, m.get("id"), m.get("from_id"), author, text, when, m.get("reply_to_message_id"))
        except ValueError as exc:
            yield ImportProblem(f"message {n}", str(exc))


def _discord(path: Path, chat: str, pai: str) -> Iterator[Parsed]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise MemoryError_(f"{path} does not look like a DiscordChatExporter JSON export (no 'messages' list)")
    for n, m in enumerate(data["messages"], 1):
        try:
            if not isinstance(m, dict) or not isinstance(m.get("author"), dict):
                raise ValueError("expected an object with an author")
            if m.get("type", "Default") not in ("Default", "Reply"):
                continue
            a = m["author"]
            text = m.get("content", "")
            names = [att.get("fileName", "file") for att in m.get("attachments") or [] if isinstance(att, dict)]
            if names:
                text = f"{text} [shares {', '.join(names)}]".strip()
            ref = m.get("reference") or {}
            author = a.get("nickname") or a.get("name") or ""
            yield _record(
                pai, chat, m.get("id"), a.get("id"), author, text, parse_time(m.get("timestamp")),
                ref.get("messageId") if isinstance(ref, dict) else None, bool(a.get("isBot", False)),
            )  # fmt: skip
        except ValueError as exc:
            yield ImportProblem(f"message {n}", str(exc))
