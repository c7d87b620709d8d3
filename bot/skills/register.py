"""The per-group register of decisions and to-dos (fed by summaries, polls and ``/todo add``).

Each group numbers its items 1, 2, 3... (``no``), so "done 2" means the same item in every list the bot
ever showed. A to-do with a due date gets a reminder (``bot.skills.reminder_store``, source ``todo:<id>``)
that mentions its owner; marking it done cancels that reminder. ``origin`` makes adding idempotent (a
replayed summary or poll close adds nothing twice).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.events import ChatRef
from bot.skills.reminder_store import GroupFull, ReminderStore
from bot.skills.skilldb import SkillDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS register_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key TEXT NOT NULL,
    no INTEGER NOT NULL,
    kind TEXT NOT NULL,                 -- decision | todo
    text TEXT NOT NULL,
    owner_id TEXT NOT NULL DEFAULT '',
    owner_name TEXT NOT NULL DEFAULT '',
    due_ts REAL,
    status TEXT NOT NULL DEFAULT 'open', -- open | done
    source TEXT NOT NULL DEFAULT '',    -- summary | poll | manual
    origin TEXT UNIQUE,
    created_ts REAL NOT NULL,
    done_by TEXT NOT NULL DEFAULT '',
    UNIQUE (group_key, no)
);
CREATE TABLE IF NOT EXISTS register_lists (
    group_key TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (group_key, message_id)
);
"""

LIST_MARK = "📝"  # starts every to-do list the bot posts (replies "done N" to one are understood)
_COLS = "id, group_key, no, kind, text, owner_id, owner_name, due_ts, status, source"


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    group_key: str
    no: int
    kind: str
    text: str
    owner_id: str
    owner_name: str
    due: datetime | None
    status: str
    source: str


def _item(r: tuple) -> Item:
    rid, gk, no, kind, text, oid, oname, due_ts, status, source = r
    due = datetime.fromtimestamp(due_ts, timezone.utc) if due_ts is not None else None
    return Item(rid, gk, no, kind, text, oid, oname, due, status, source)


class Register:
    def __init__(self, db: SkillDB, reminders: ReminderStore) -> None:
        self.db = db
        self.reminders = reminders
        db.ensure_schema(SCHEMA)

    async def add(
        self,
        chat: ChatRef,
        kind: str,
        text: str,
        *,
        now: datetime,
        source: str,
        origin: str | None = None,
        owner_id: str = "",
        owner_name: str = "",
        due: datetime | None = None,
        thread: str | None = None,
        reminder_cap: int = 0,
        requester: tuple[str, str] = ("", ""),
    ) -> tuple[Item, bool]:
        """Add a decision or to-do; returns (item, whether a due reminder was set). Idempotent on ``origin``."""

        def body(c: sqlite3.Connection) -> tuple[Item, bool]:
            if origin is not None:
                row = c.execute(f"SELECT {_COLS} FROM register_items WHERE origin=?", (origin,)).fetchone()
                if row:
                    return _item(row), False
            (no,) = c.execute(
                "SELECT COALESCE(MAX(no), 0) + 1 FROM register_items WHERE group_key=?", (chat.key,)
            ).fetchone()
            cur = c.execute(
                "INSERT INTO register_items(group_key, no, kind, text, owner_id, owner_name, due_ts, source, origin,"
                " created_ts) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    chat.key,
                    no,
                    kind,
                    text,
                    owner_id,
                    owner_name,
                    due.timestamp() if due else None,
                    source,
                    origin,
                    now.timestamp(),
                ),
            )
            return _item(
                c.execute(f"SELECT {_COLS} FROM register_items WHERE id=?", (cur.lastrowid,)).fetchone()
            ), True

        item, new = await self.db.tx(body)
        reminded = False
        if new and kind == "todo" and due is not None and due > now:
            rid, rname = (owner_id, owner_name) if owner_id else requester
            try:
                await self.reminders.add(
                    chat=chat,
                    thread=thread,
                    owner_id=rid,
                    owner_name=owner_name or rname,
                    text=text,
                    due=due,
                    rule=None,
                    cap=reminder_cap,
                    now=now,
                    origin=f"todo:{item.id}",
                    source=f"todo:{item.id}",
                )
                reminded = True
            except GroupFull:
                reminded = False
        return item, reminded

    async def items(
        self, group_key: str, kind: str, *, open_only: bool = True, limit: int = 50
    ) -> list[Item]:
        where = " AND status='open'" if open_only else ""
        rows = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM register_items WHERE group_key=? AND kind=?{where} ORDER BY no DESC LIMIT ?",
                (group_key, kind, limit),
            ).fetchall()
        )
        return [_item(r) for r in reversed(rows)]

    async def mark_done(self, group_key: str, no: int, by: str) -> Item | None:
        """Mark to-do ``no`` done (and cancel its reminder); None if there is no such open to-do."""
        cur = await self.db.run(
            lambda c: c.execute(
                "UPDATE register_items SET status='done', done_by=? WHERE group_key=? AND no=? AND kind='todo'"
                " AND status='open'",
                (by, group_key, no),
            )
        )
        if cur.rowcount != 1:
            return None
        row = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM register_items WHERE group_key=? AND no=?", (group_key, no)
            ).fetchone()
        )
        item = _item(row)
        await self.reminders.cancel_source(group_key, f"todo:{item.id}")
        return item

    async def get(self, group_key: str, no: int) -> Item | None:
        row = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM register_items WHERE group_key=? AND no=?", (group_key, no)
            ).fetchone()
        )
        return _item(row) if row else None

    async def note_list_message(self, group_key: str, message_id: str) -> None:
        await self.db.run(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO register_lists(group_key, message_id) VALUES (?,?)",
                (group_key, message_id),
            )
        )

    async def is_list_message(self, group_key: str, message_id: str) -> bool:
        row = await self.db.run(
            lambda c: c.execute(
                "SELECT 1 FROM register_lists WHERE group_key=? AND message_id=?", (group_key, message_id)
            ).fetchone()
        )
        return row is not None
