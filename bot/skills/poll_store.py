"""Durable polls and votes.

A poll row holds where it was posted (platform, chat id, title, thread), the question and options, the
id of the message that carries it, its closing time and state:

    open --claim_due--> closed            (announced; the result is recorded as a decision)
                 \\--> announce (retry)    (the announcement could not be sent; retried with backoff)

``claim_closing`` moves ``open`` -> ``closed`` with a compare-and-set, so a poll is closed and announced
once, even with two runners or across a restart (a crash between claim and send loses that announcement,
never doubles it). One vote per member id; a later vote replaces the earlier one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.events import ChatRef
from bot.skills.skilldb import SkillDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS polls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key TEXT NOT NULL, no INTEGER NOT NULL,
    platform TEXT NOT NULL, chat_id TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', thread TEXT,
    question TEXT NOT NULL, options TEXT NOT NULL, native INTEGER NOT NULL DEFAULT 0,
    message_id TEXT, closes_ts REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',        -- open | closed | announce
    attempts INTEGER NOT NULL DEFAULT 0, retry_ts REAL,
    opener_id TEXT NOT NULL, opener_name TEXT NOT NULL,
    origin TEXT UNIQUE, created_ts REAL NOT NULL,
    UNIQUE (group_key, no)
);
CREATE INDEX IF NOT EXISTS polls_due ON polls(status, closes_ts);
CREATE TABLE IF NOT EXISTS poll_votes (
    poll_id INTEGER NOT NULL, voter_id TEXT NOT NULL, voter_name TEXT NOT NULL, option INTEGER NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (poll_id, voter_id)
);
"""

_COLS = (
    "id, group_key, no, platform, chat_id, title, thread, question, options, native, message_id, closes_ts,"
    " status, attempts, opener_id, opener_name"
)


@dataclass(frozen=True, slots=True)
class PollRow:
    id: int
    group_key: str
    no: int
    chat: ChatRef
    thread: str | None
    question: str
    options: tuple[str, ...]
    native: bool
    message_id: str | None
    closes: datetime
    status: str
    attempts: int
    opener_id: str
    opener_name: str


def _row(r: tuple) -> PollRow:
    (
        pid,
        gk,
        no,
        platform,
        chat_id,
        title,
        thread,
        q,
        opts,
        native,
        mid,
        closes_ts,
        status,
        attempts,
        oid,
        oname,
    ) = r
    return PollRow(
        pid,
        gk,
        no,
        ChatRef(platform, chat_id, title),
        thread,
        q,
        tuple(json.loads(opts)),
        bool(native),
        mid,
        datetime.fromtimestamp(closes_ts, timezone.utc),
        status,
        attempts,
        oid,
        oname,
    )


class PollStore:
    def __init__(self, db: SkillDB) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)

    async def create(
        self,
        *,
        chat: ChatRef,
        thread: str | None,
        question: str,
        options: tuple[str, ...],
        native: bool,
        closes: datetime,
        opener: tuple[str, str],
        origin: str,
        now: datetime,
    ) -> tuple[PollRow, bool]:
        """Store a poll; returns (poll, created). A replayed request (same ``origin``) returns the first."""

        def body(c: sqlite3.Connection) -> tuple[PollRow, bool]:
            row = c.execute(f"SELECT {_COLS} FROM polls WHERE origin=?", (origin,)).fetchone()
            if row:
                return _row(row), False
            (no,) = c.execute(
                "SELECT COALESCE(MAX(no), 0) + 1 FROM polls WHERE group_key=?", (chat.key,)
            ).fetchone()
            cur = c.execute(
                "INSERT INTO polls(group_key, no, platform, chat_id, title, thread, question, options, native,"
                " closes_ts, opener_id, opener_name, origin, created_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    chat.key,
                    no,
                    chat.platform,
                    chat.chat_id,
                    chat.title,
                    thread,
                    question,
                    json.dumps(list(options), ensure_ascii=False),
                    int(native),
                    closes.timestamp(),
                    opener[0],
                    opener[1],
                    origin,
                    now.timestamp(),
                ),
            )
            return _row(c.execute(f"SELECT {_COLS} FROM polls WHERE id=?", (cur.lastrowid,)).fetchone()), True

        return await self.db.tx(body)

    async def set_message(self, poll_id: int, message_id: str) -> None:
        await self.db.run(
            lambda c: c.execute("UPDATE polls SET message_id=? WHERE id=?", (message_id, poll_id))
        )

    async def by_message(self, group_key: str, message_id: str) -> PollRow | None:
        row = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM polls WHERE group_key=? AND message_id=?", (group_key, message_id)
            ).fetchone()
        )
        return _row(row) if row else None

    async def get(self, group_key: str, no: int) -> PollRow | None:
        row = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM polls WHERE group_key=? AND no=?", (group_key, no)
            ).fetchone()
        )
        return _row(row) if row else None

    async def open_polls(self, group_key: str) -> list[PollRow]:
        rows = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM polls WHERE group_key=? AND status='open' ORDER BY no", (group_key,)
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def vote(self, poll_id: int, voter_id: str, voter_name: str, option: int, now: datetime) -> bool:
        """Record (or replace) a member's vote; False when the poll is no longer open."""

        def body(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT status FROM polls WHERE id=?", (poll_id,)).fetchone()
            if not row or row[0] != "open":
                return False
            c.execute(
                "INSERT INTO poll_votes(poll_id, voter_id, voter_name, option, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(poll_id, voter_id) DO UPDATE SET option=excluded.option, voter_name=excluded.voter_name,"
                " at=excluded.at",
                (poll_id, voter_id, voter_name, option, now.timestamp()),
            )
            return True

        return await self.db.tx(body)

    async def tally(self, poll_id: int) -> dict[int, int]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT option, COUNT(*) FROM poll_votes WHERE poll_id=? GROUP BY option", (poll_id,)
            ).fetchall()
        )
        return {opt: n for opt, n in rows}

    async def due(self, now: datetime, limit: int = 50) -> list[PollRow]:
        ts = now.timestamp()
        rows = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM polls WHERE (status='open' AND closes_ts<=?) OR (status='announce' AND retry_ts<=?)"
                " ORDER BY closes_ts LIMIT ?",
                (ts, ts, limit),
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def claim_closing(self, poll: PollRow) -> bool:
        """Take the right to close and announce this poll (open/announce -> closed); False if taken."""
        cur = await self.db.run(
            lambda c: c.execute(
                "UPDATE polls SET status='closed' WHERE id=? AND status=? ", (poll.id, poll.status)
            )
        )
        return cur.rowcount == 1

    async def close_now(self, poll_id: int, now: datetime) -> bool:
        cur = await self.db.run(
            lambda c: c.execute(
                "UPDATE polls SET closes_ts=? WHERE id=? AND status='open'", (now.timestamp(), poll_id)
            )
        )
        return cur.rowcount == 1

    async def announce_failed(self, poll: PollRow, retry_at: datetime, give_up: bool) -> None:
        state = "closed" if give_up else "announce"
        await self.db.run(
            lambda c: c.execute(
                "UPDATE polls SET status=?, attempts=attempts+1, retry_ts=? WHERE id=?",
                (state, retry_at.timestamp(), poll.id),
            )
        )
