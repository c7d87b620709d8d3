"""The per-group register of decisions and to-dos (fed by summaries, polls and ``/todo add``).

Each group numbers its items 1, 2, 3... (``no``), so "done 2" means the same item in every list the bot
ever showed. A to-do with a due date gets a reminder (``bot.skills.reminder_store``, source ``todo:<id>``)
that mentions its owner; marking it done cancels that reminder. ``origin`` makes adding idempotent (a
replayed summary or poll close adds nothing twice).

One register, no repeats: a summary of a stretch that overlaps an earlier one names the same decisions and
to-dos again, often in other words ("Venue: Blue Hall", "We chose the Blue Hall as the venue"). An item a
summary adds is the item already registered when their content words mostly agree (``same_item``), open or
done, so repeated summaries leave one entry per decision and to-do.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

import rjieba

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
    status TEXT NOT NULL DEFAULT 'open', -- open | done | removed (forgotten: text emptied)
    source TEXT NOT NULL DEFAULT '',    -- summary | poll | manual
    origin TEXT UNIQUE,
    created_ts REAL NOT NULL,
    done_by TEXT NOT NULL DEFAULT '',
    requester_id TEXT NOT NULL DEFAULT '',  -- who added it (for forgetting what a member typed)
    UNIQUE (group_key, no)
);
CREATE TABLE IF NOT EXISTS register_lists (
    group_key TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (group_key, message_id)
);
"""

LIST_MARK = "📝"  # starts every to-do list the bot posts (replies "done N" to one are understood)
SAME_ITEM = 0.6  # least Jaccard overlap of content words for two items to be one
_WORD = re.compile(r"[\u3400-\u9fff]+|[^\W\u3400-\u9fff]+")
_STOP = frozenset(
    """a an the and or of to for in on at by with from as is are be we our us i you they it this that will
    shall should must let lets let's has have had do does did done to-do todo decision decided decide agreed
    chose choose chosen go going get got 的 了 是 在 和 我们 大家 要 把 就 都 决定 定 确定""".split()
)
_SUFFIXES = ("ings", "ing", "ies", "ied", "es", "ed", "s")


def _stem(word: str) -> str:
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            return word[: -len(suf)] + ("y" if suf in ("ies", "ied") else "")
    return word


def item_terms(text: str) -> frozenset[str]:
    """The content terms of an item's text: stemmed English words; for Chinese, the characters of its words
    without function words ("预订" and "订" share 订, "买零食" and "买饮料" only 买)."""
    out: set[str] = set()
    for run in _WORD.findall(text.casefold()):
        if "\u3400" <= run[0] <= "\u9fff":
            out.update(ch for w in rjieba.cut(run) if w not in _STOP for ch in w)
        elif run not in _STOP:
            out.add(_stem(run))
    return frozenset(out)


def same_item(a: str, b: str) -> bool:
    """Whether two item texts name the same decision or to-do."""
    ta, tb = item_terms(a), item_terms(b)
    if not ta or not tb:
        return a.strip().casefold() == b.strip().casefold()
    return len(ta & tb) / len(ta | tb) >= SAME_ITEM
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
        db.ensure_column("register_items", "requester_id", "TEXT NOT NULL DEFAULT ''")

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
        """Add a decision or to-do; returns (item, whether a due reminder was set). Idempotent on ``origin``;
        an item from a summary that is already registered in other words (``same_item``) is not added again."""

        def body(c: sqlite3.Connection) -> tuple[Item, bool]:
            if origin is not None:
                row = c.execute(f"SELECT {_COLS} FROM register_items WHERE origin=?", (origin,)).fetchone()
                if row:
                    return _item(row), False
            if source == "summary":
                for row in c.execute(
                    f"SELECT {_COLS} FROM register_items WHERE group_key=? AND kind=? ORDER BY no DESC LIMIT 500",
                    (chat.key, kind),
                ):
                    if same_item(row[4], text):
                        return _item(row), False
            (no,) = c.execute(
                "SELECT COALESCE(MAX(no), 0) + 1 FROM register_items WHERE group_key=?", (chat.key,)
            ).fetchone()
            cur = c.execute(
                "INSERT INTO register_items(group_key, no, kind, text, owner_id, owner_name, due_ts, source, origin,"
                " created_ts, requester_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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
                    requester[0],
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
