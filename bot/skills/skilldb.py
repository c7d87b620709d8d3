"""The skills' own durable state: one SQLite file (WAL) beside the core's, shared by every skill module.

Skills keep their tables here (reminders, polls, the decisions/to-do register, the group directory) rather
than in the core's ``paibot.db``, so the core's schema stays the core's. One connection guarded by a lock;
every public coroutine runs its SQL on a worker thread, never on the event loop. ``tx`` runs a body inside
``BEGIN IMMEDIATE`` so a claim (e.g. "this reminder's firing is mine") is atomic across processes too.

One instance per app (``bot.skills.resources.SkillResources.db``) is shared by every skill; the app
starts it before and stops it after the skills that use it (``stop`` closes the file).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bot.events import ChatRef
from bot.state import run_transaction

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    group_key TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT ''
);
"""


class SkillDB:
    """A small SQLite wrapper: ``run(fn)`` and ``tx(fn)`` call ``fn(conn)`` off the event loop."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.execute("PRAGMA secure_delete=ON")  # forgotten text is overwritten, not left in free pages
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._closed = False
        self._known_groups: set[str] = set()

    # background-service protocol: nothing to start; stop closes the file
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def ensure_schema(self, script: str) -> None:
        """Create a skill's tables (called once from a skill's ``build``; blocking but tiny)."""
        with self._lock:
            self._conn.executescript(script)

    def ensure_column(self, table: str, column: str, decl: str) -> None:
        """Add a column a newer version needs to a table an older one created (blocking but tiny)."""
        with self._lock:
            if column not in {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._conn)

        return await asyncio.to_thread(locked)

    async def tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one immediate transaction (rolled back if it or the commit fails)."""
        return await self.run(lambda conn: run_transaction(conn, fn))

    # ----------------------------------------------------------------- group directory

    async def note_group(self, chat: ChatRef) -> None:
        """Remember how to address a group (platform, chat id, title) so background jobs can post there."""
        if chat.key in self._known_groups:
            return
        await self.run(
            lambda c: c.execute(
                "INSERT INTO groups(group_key, platform, chat_id, title) VALUES (?,?,?,?) "
                "ON CONFLICT(group_key) DO UPDATE SET title=excluded.title",
                (chat.key, chat.platform, chat.chat_id, chat.title),
            )
        )
        self._known_groups.add(chat.key)

    async def groups(self) -> list[ChatRef]:
        rows = await self.run(lambda c: c.execute("SELECT platform, chat_id, title FROM groups").fetchall())
        return [ChatRef(p, cid, title) for p, cid, title in rows]


def chat_to_row(chat: ChatRef) -> tuple[str, str, str]:
    return chat.platform, chat.chat_id, chat.title


def chat_from_row(platform: str, chat_id: str, title: str) -> ChatRef:
    return ChatRef(platform, chat_id, title)
