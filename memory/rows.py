"""The transcript's row shapes and SQL helpers: what a record row holds, what ranking reads of it (``Meta``),
and the search filters as SQL. Shared by ``memory.transcript`` and the lexical index (``memory.fts``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

from bot.ports import EVIDENCE_KINDS, MemoryRecord, SearchFilters

COLS = "seq, pai, id, chat_key, author_id, author_name, text, sent_at, kind, reply_to_id, url, is_bot, meta"
# ``asks``: whether the text holds a question mark (the turn after it may answer it), computed in SQL so
# ranking reads no text
META_COLS = "seq, chat_key, author_id, author_name, ts, kind, (instr(text, '?') + instr(text, '？')) > 0"
SCHEMA_VERSION = "3"  # 2: kinds, evidence and other FTS tables, context columns; 3: five turns of far context
NO_VECTOR = 2  # records.indexed: the record is not embedded (not evidence)


def pai_tag(pai: str) -> str:
    """A stable, name-safe tag for a pai key (used for its FTS table and its chroma collection)."""
    return hashlib.sha256(pai.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Row:
    """A transcript record with its storage sequence number (order of arrival, used for neighbours).
    ``updated``: ``insert`` changed a record it already had (an edit) instead of adding one."""

    seq: int
    record: MemoryRecord
    updated: bool = False


class Pending(NamedTuple):
    """A record waiting for the vector index."""

    seq: int
    pai: str
    id: str
    author_name: str
    text: str


class Meta(NamedTuple):
    """The columns ranking needs, without the text: candidates are scored on these and only the final hits
    are read in full."""

    seq: int
    chat_key: str
    author_id: str
    author_name: str
    ts: float
    kind: str
    asks: bool = False


def to_row(r: sqlite3.Row | tuple) -> Row:
    seq, pai, rid, chat, aid, aname, text, sent_at, kind, reply, url, is_bot, meta = r
    rec = MemoryRecord(
        id=rid, pai=pai, chat_key=chat, author_id=aid, author_name=aname, text=text,
        sent_at=datetime.fromisoformat(sent_at), kind=kind, reply_to_id=reply, url=url,
        is_bot=bool(is_bot), meta=json.loads(meta) if meta != "{}" else {},
    )  # fmt: skip
    return Row(seq, rec)


def record_params(seq: int, rec: MemoryRecord) -> tuple:
    meta = json.dumps(rec.meta, ensure_ascii=False, default=str) if rec.meta else "{}"
    indexed = 0 if rec.kind in EVIDENCE_KINDS else NO_VECTOR
    return (seq, rec.pai, rec.id, rec.chat_key, rec.author_id, rec.author_name, rec.text, ts_of(rec.sent_at),
            rec.sent_at.isoformat(), rec.kind, rec.reply_to_id, rec.url, int(rec.is_bot), meta, indexed)  # fmt: skip


def ts_of(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def filter_sql(filters: SearchFilters | None, alias: str = "r.") -> tuple[str, tuple]:
    """SQL conditions (with a leading AND) for the search filters."""
    if filters is None:
        return "", ()
    parts: list[str] = []
    args: list[object] = []
    if filters.author_ids or filters.author_names:
        ors = []
        if filters.author_ids:
            ors.append(f"{alias}author_id IN ({','.join('?' * len(filters.author_ids))})")
            args += filters.author_ids
        if filters.author_names:
            ors.append(f"casefold({alias}author_name) IN ({','.join('?' * len(filters.author_names))})")
            args += [n.casefold() for n in filters.author_names]
        parts.append("(" + " OR ".join(ors) + ")")
    if filters.since is not None:
        parts.append(f"{alias}ts >= ?")
        args.append(ts_of(filters.since))
    if filters.until is not None:
        parts.append(f"{alias}ts < ?")
        args.append(ts_of(filters.until))
    if filters.kinds:
        parts.append(f"{alias}kind IN ({','.join('?' * len(filters.kinds))})")
        args += filters.kinds
    return ("".join(" AND " + p for p in parts), tuple(args))


def casefold(value: str | None) -> str | None:
    return value.casefold() if value else value


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
