"""A small durable table of the attachments posted in each chat, and of the documents read into memory.

Why it exists: a reply only carries ``ReplyRef(message_id, text, author)``, not the original's attachments,
so "@Pai make this black and white" (a reply to a photo) must look the photo up by message id. And
``read_file`` needs the files of a pai (name, poster, how many chunks) without scanning memory.

The table lives in its own SQLite file under the data directory (WAL, one connection per instance, every
call on a worker thread). Each chat keeps its last ``keep_per_chat`` attachments; older rows are pruned.
Rows never cross chats or pais: every query names the chat key or the pai taken from the trusted envelope.
``start``/``stop`` make it a background service of the skill loader, so the app closes it on shutdown.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from bot.events import Attachment, Message
from bot.ports import Erasure
from bot.state import checkpoint

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS attachments(
    chat_key TEXT NOT NULL, message_id TEXT NOT NULL, idx INTEGER NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL, size INTEGER NOT NULL, source TEXT NOT NULL,
    author_id TEXT NOT NULL, author_name TEXT NOT NULL, sent_at TEXT NOT NULL,
    PRIMARY KEY (chat_key, message_id, idx));
CREATE INDEX IF NOT EXISTS attachments_by_time ON attachments(chat_key, sent_at);
CREATE TABLE IF NOT EXISTS documents(
    pai TEXT NOT NULL, record_base TEXT NOT NULL, name TEXT NOT NULL, chat_key TEXT NOT NULL,
    posted_by TEXT NOT NULL, posted_by_id TEXT NOT NULL, posted_at TEXT NOT NULL,
    pages INTEGER, chunks INTEGER NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (pai, record_base, name));
"""


@dataclass(frozen=True, slots=True)
class LoggedAttachment:
    chat_key: str
    message_id: str
    attachment: Attachment
    author_id: str
    author_name: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """A document of a pai: ``status`` is ``ok``, ``partial`` (read up to a limit) or ``refused: <why>``."""

    pai: str
    record_base: str
    name: str
    chat_key: str
    posted_by: str
    posted_by_id: str
    posted_at: datetime
    pages: int | None
    chunks: int
    status: str


class AttachmentLog:
    def __init__(self, path: Path, keep_per_chat: int = 500) -> None:
        self._path = path
        self._keep = keep_per_chat
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle (background service)

    async def start(self) -> None:
        await self._run(lambda c: None)

    async def stop(self) -> None:
        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA secure_delete=ON")  # forgotten names are overwritten, not left in free pages
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                conn = self._connect()
                with conn:
                    return fn(conn)

        return await asyncio.to_thread(locked)

    # ------------------------------------------------------------------ attachments

    async def remember(self, msg: Message) -> None:
        """Log every attachment of ``msg`` (idempotent) and prune the chat's oldest rows past the cap."""
        if not msg.attachments:
            return
        key = msg.chat.key
        rows = [
            (key, msg.id, i, a.kind, a.name, a.mime, a.size, a.source, msg.author.user_id,
             msg.author.display_name, msg.sent_at.isoformat())
            for i, a in enumerate(msg.attachments)
        ]  # fmt: skip

        def write(c: sqlite3.Connection) -> None:
            c.executemany("INSERT OR IGNORE INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            c.execute(
                "DELETE FROM attachments WHERE chat_key = ? AND rowid NOT IN (SELECT rowid FROM attachments "
                "WHERE chat_key = ? ORDER BY sent_at DESC LIMIT ?)", (key, key, self._keep),
            )  # fmt: skip

        await self._run(write)

    async def attachments_of(self, chat_key: str, message_id: str, kind: str | None = None) -> list[LoggedAttachment]:
        """The attachments of one message of one chat (in posting order), optionally of one kind."""

        def read(c: sqlite3.Connection) -> list[tuple]:
            return c.execute(
                "SELECT chat_key, message_id, kind, name, mime, size, source, author_id, author_name, sent_at "
                "FROM attachments WHERE chat_key = ? AND message_id = ? AND (? IS NULL OR kind = ?) ORDER BY idx",
                (chat_key, message_id, kind, kind),
            ).fetchall()

        return [
            LoggedAttachment(r[0], r[1], Attachment(r[2], r[3], r[4], r[5], r[6]), r[7], r[8],
                             datetime.fromisoformat(r[9]))
            for r in await self._run(read)
        ]  # fmt: skip

    async def latest(self, chat_key: str, kind: str) -> LoggedAttachment | None:
        """The most recent attachment of ``kind`` in the chat."""

        def read(c: sqlite3.Connection) -> tuple | None:
            return c.execute(
                "SELECT message_id FROM attachments WHERE chat_key = ? AND kind = ? ORDER BY sent_at DESC LIMIT 1",
                (chat_key, kind),
            ).fetchone()

        row = await self._run(read)
        if row is None:
            return None
        found = await self.attachments_of(chat_key, row[0], kind)
        return found[0] if found else None

    # ------------------------------------------------------------------ forgetting (ContentEraser)

    async def passages(self, erasure: Erasure) -> list[str]:
        """The names of the member's files (a bot message naming one is a quote of her)."""
        if erasure.author_id is None or not erasure.chat_keys:
            return []
        marks = ",".join("?" * len(erasure.chat_keys))
        rows = await self._run(lambda c: c.execute(
            f"SELECT name FROM attachments WHERE author_id = ? AND chat_key IN ({marks}) UNION "
            f"SELECT name FROM documents WHERE posted_by_id = ? AND chat_key IN ({marks})",
            (erasure.author_id, *erasure.chat_keys, erasure.author_id, *erasure.chat_keys),
        ).fetchall())  # fmt: skip
        return [r[0] for r in rows]

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """Drop the rows of the member's attachments and documents, of the given messages, or (retention)
        of those posted before the cutoff."""
        e = erasure
        if not e.chat_keys:
            return {}
        marks = ",".join("?" * len(e.chat_keys))

        def delete(c: sqlite3.Connection) -> dict[str, int]:
            files = docs = 0
            if e.author_id is not None:
                files += c.execute(f"DELETE FROM attachments WHERE author_id = ? AND chat_key IN ({marks})",
                                   (e.author_id, *e.chat_keys)).rowcount
                docs += c.execute(f"DELETE FROM documents WHERE posted_by_id = ? AND chat_key IN ({marks})",
                                  (e.author_id, *e.chat_keys)).rowcount
            for mid in e.message_ids:
                files += c.execute(f"DELETE FROM attachments WHERE message_id = ? AND chat_key IN ({marks})",
                                   (mid, *e.chat_keys)).rowcount
                docs += c.execute(
                    f"DELETE FROM documents WHERE (record_base = ? OR record_base = chat_key || '#' || ?)"
                    f" AND chat_key IN ({marks})", (mid, mid, *e.chat_keys)).rowcount
            if e.before is not None:
                for table, column in (("attachments", "sent_at"), ("documents", "posted_at")):
                    old = [rowid for rowid, at in c.execute(
                        f"SELECT rowid, {column} FROM {table} WHERE chat_key IN ({marks})", e.chat_keys)
                        if datetime.fromisoformat(at) < e.before]  # fmt: skip
                    c.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(r,) for r in old])
                    if table == "attachments":
                        files += len(old)
                    else:
                        docs += len(old)
            return {"attachments": files, "documents": docs}

        counts = await self._run(delete)
        if any(counts.values()):
            await self._run(checkpoint)
        return counts

    # ------------------------------------------------------------------ documents

    async def add_document(self, entry: DocumentEntry) -> None:
        row = (entry.pai, entry.record_base, entry.name, entry.chat_key, entry.posted_by, entry.posted_by_id,
               entry.posted_at.isoformat(), entry.pages, entry.chunks, entry.status)  # fmt: skip
        await self._run(lambda c: c.execute("INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,?,?,?)", row))

    async def documents(self, pai: str) -> list[DocumentEntry]:
        """The pai's documents, newest first."""

        def read(c: sqlite3.Connection) -> list[tuple]:
            return c.execute(
                "SELECT * FROM documents WHERE pai = ? ORDER BY posted_at DESC", (pai,)
            ).fetchall()

        return [
            DocumentEntry(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]), r[7], r[8], r[9])
            for r in await self._run(read)
        ]
