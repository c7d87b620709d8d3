"""The relay's durable state, in the state database: the jobs still to do and the map of relayed copies.

``relay_jobs`` is a queue: one row per (original event, target group), enqueued once (its key is unique,
so an event handled again after a crash enqueues nothing new) and done in ``seq`` order per target. A job's
payload (the copy's text) goes once the job is done; the row stays a while as the record that a message
was passed on (edits and deletions follow only messages that were), then is pruned.

``relay_copies`` maps every copy the bot posted (group, message id) to its original (group, message id), so
replies, edits and deletions find their way on every platform. It holds ids, the original author's id and
name and the prefix written before the text: no message text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.state import StateDB

TABLES = """
CREATE TABLE IF NOT EXISTS relay_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,                 -- "<original event>><target group>"
    target TEXT NOT NULL,                     -- the group key the job posts to
    kind TEXT NOT NULL,                       -- copy | edit | delete
    origin_chat TEXT NOT NULL,
    origin_id TEXT NOT NULL,                  -- the original message's platform id
    author TEXT NOT NULL DEFAULT '',          -- "<platform>:<user id>" of the original's author ('' the bot)
    payload TEXT NOT NULL DEFAULT '',         -- JSON: the copy (text, reply, files); '' once done
    status TEXT NOT NULL DEFAULT 'queued',    -- queued | done
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_jobs_queued ON relay_jobs(status, seq);
CREATE INDEX IF NOT EXISTS relay_jobs_origin ON relay_jobs(origin_chat, origin_id);
CREATE TABLE IF NOT EXISTS relay_copies (
    chat_key TEXT NOT NULL,
    message_id TEXT NOT NULL,                 -- the copy's platform id (each part of a split copy)
    origin_chat TEXT NOT NULL,
    origin_id TEXT NOT NULL,
    first_id TEXT NOT NULL,                   -- the copy's first part (edits and replies go there)
    author TEXT NOT NULL DEFAULT '',          -- the original's author ('' for the bot's own answers)
    author_name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL DEFAULT '',          -- "[TG] Alice: " as written before the text
    url TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    PRIMARY KEY (chat_key, message_id)
);
CREATE INDEX IF NOT EXISTS relay_copies_origin ON relay_copies(origin_chat, origin_id);
"""

KEEP_JOBS = timedelta(days=30)  # edits and deletions of older messages are no longer passed on
KEEP_COPIES = timedelta(days=180)  # replies to older copies lose their link to the original


@dataclass(frozen=True, slots=True)
class Job:
    seq: int
    key: str
    target: str
    kind: str
    origin_chat: str
    origin_id: str
    author: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Copy:
    """One relayed copy (its first part) and what it stands for."""

    chat_key: str
    message_id: str
    origin_chat: str
    origin_id: str
    author: str
    author_name: str
    prefix: str
    url: str


@dataclass(frozen=True, slots=True)
class NewJob:
    key: str
    target: str
    kind: str
    origin_chat: str
    origin_id: str
    author: str
    payload: dict[str, Any]


class RelayJobs:
    def __init__(self, state: StateDB) -> None:
        self.state = state
        state.add_tables(TABLES)

    async def enqueue(self, jobs: Sequence[NewJob]) -> int:
        """Add jobs (a key seen before is skipped); returns how many are new."""
        if not jobs:
            return 0
        now = self.state.now().isoformat()
        rows = [(j.key, j.target, j.kind, j.origin_chat, j.origin_id, j.author,
                 json.dumps(j.payload, ensure_ascii=False), now) for j in jobs]

        def q(c: sqlite3.Connection) -> int:
            new = 0
            for row in rows:
                new += c.execute(
                    "INSERT OR IGNORE INTO relay_jobs(key, target, kind, origin_chat, origin_id, author, payload, "
                    "created_at) VALUES (?,?,?,?,?,?,?,?)", row).rowcount
            return new

        return await self.state.run(q, transaction=True)

    async def queued(self, after_seq: int = 0, limit: int = 500) -> list[Job]:
        rows = await self.state.run(lambda c: c.execute(
            "SELECT seq, key, target, kind, origin_chat, origin_id, author, payload FROM relay_jobs "
            "WHERE status='queued' AND seq>? ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall())
        return [Job(*row[:7], json.loads(row[7]) if row[7] else {}) for row in rows]

    async def done(self, seq: int) -> None:
        await self.state.run(lambda c: c.execute(
            "UPDATE relay_jobs SET status='done', payload='' WHERE seq=?", (seq,)))

    async def copied(self, job: Job, ledger_key: str, ids: Sequence[str], url: str, *, own: bool = False) -> None:
        """The copy is out: map its parts to the original, mark the reply ledger sent and the job done, in
        one transaction (a crash leaves either all of it or none). ``own``: a copy of the bot's own answer,
        so a reply to it is a reply to the bot (``own:<id>`` in group_kv, as ``Services.send`` notes)."""
        now = self.state.now().isoformat()
        p = job.payload

        def q(c: sqlite3.Connection) -> None:
            for mid in ids:
                c.execute(
                    "INSERT OR REPLACE INTO relay_copies(chat_key, message_id, origin_chat, origin_id, first_id, "
                    "author, author_name, prefix, url, at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (job.target, mid, job.origin_chat, job.origin_id, ids[0], job.author,
                     p.get("author_name", ""), p.get("prefix", ""), url, now))
                if own:
                    c.execute("INSERT OR IGNORE INTO group_kv(group_key, key, value) VALUES (?,?,'1')",
                              (job.target, f"own:{mid}"))
            c.execute("UPDATE replies SET state='sent', sent_id=?, at=?, payload='' WHERE event_id=?",
                      (ids[0], now, ledger_key))
            c.execute("UPDATE relay_jobs SET status='done', payload='' WHERE seq=?", (job.seq,))

        await self.state.run(q, transaction=True)

    async def uncopied(self, job: Job, ids: Sequence[str]) -> None:
        """A copy was deleted: its map rows go and the job is done."""
        marks = ",".join("?" * len(ids))

        def q(c: sqlite3.Connection) -> None:
            if ids:
                c.execute(f"DELETE FROM relay_copies WHERE chat_key=? AND message_id IN ({marks})", (job.target, *ids))
            c.execute("UPDATE relay_jobs SET status='done', payload='' WHERE seq=?", (job.seq,))

        await self.state.run(q, transaction=True)

    async def parts(self, chat_key: str, first_id: str) -> list[str]:
        """Every part of a copy, its first part first."""
        rows = await self.state.run(lambda c: c.execute(
            "SELECT message_id FROM relay_copies WHERE chat_key=? AND first_id=?", (chat_key, first_id)).fetchall())
        ids = [r[0] for r in rows]
        return [first_id, *(i for i in ids if i != first_id)]

    # ----------------------------------------------------------------- lookups

    async def copy_of(self, chat_key: str, message_id: str) -> Copy | None:
        """The copy a message of ``chat_key`` is (any of its parts), or None for an original."""
        row = await self.state.run(lambda c: c.execute(
            "SELECT chat_key, first_id, origin_chat, origin_id, author, author_name, prefix, url FROM relay_copies "
            "WHERE chat_key=? AND message_id=?", (chat_key, message_id)).fetchone())
        return Copy(*row) if row else None

    async def copies(self, origin_chat: str, origin_id: str) -> dict[str, Copy]:
        """The copies of an original, by group key (their first parts)."""
        rows = await self.state.run(lambda c: c.execute(
            "SELECT chat_key, first_id, origin_chat, origin_id, author, author_name, prefix, url FROM relay_copies "
            "WHERE origin_chat=? AND origin_id=? AND message_id=first_id", (origin_chat, origin_id)).fetchall())
        return {row[0]: Copy(*row) for row in rows}

    async def copies_in(self, chat_key: str, origins: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Copy]:
        """For the prompt: the copies in ``chat_key`` of these originals."""
        if not origins:
            return {}

        def q(c: sqlite3.Connection) -> list[Any]:
            out = []
            for i in range(0, len(origins), 400):
                chunk = origins[i : i + 400]
                marks = " OR ".join("(origin_chat=? AND origin_id=?)" for _ in chunk)
                out += c.execute(
                    "SELECT chat_key, first_id, origin_chat, origin_id, author, author_name, prefix, url "
                    f"FROM relay_copies WHERE chat_key=? AND message_id=first_id AND ({marks})",
                    (chat_key, *[v for pair in chunk for v in pair])).fetchall()
            return out

        return {(r[2], r[3]): Copy(*r) for r in await self.state.run(q)}

    async def targets(self, origin_chat: str, origin_id: str) -> list[str]:
        """The groups an original was (or is being) passed on to."""
        rows = await self.state.run(lambda c: c.execute(
            "SELECT DISTINCT target FROM relay_jobs WHERE origin_chat=? AND origin_id=? AND kind='copy'",
            (origin_chat, origin_id)).fetchall())
        return [r[0] for r in rows]

    # ----------------------------------------------------------------- forgetting and pruning

    async def forget_author(self, author: str, chats: Sequence[str]) -> list[Copy]:
        """A member's words leave the relay: her jobs go (queued or done: the copies they made are being
        deleted) and her copies (first parts) are returned, for the caller to delete; deleting a copy
        removes its map rows."""
        marks = ",".join("?" * len(chats))

        def q(c: sqlite3.Connection) -> list[Copy]:
            c.execute(f"DELETE FROM relay_jobs WHERE kind!='delete' AND author=? AND origin_chat IN ({marks})",
                      (author, *chats))
            rows = c.execute(
                "SELECT chat_key, first_id, origin_chat, origin_id, author, author_name, prefix, url FROM relay_copies "
                f"WHERE author=? AND origin_chat IN ({marks}) AND message_id=first_id", (author, *chats)).fetchall()
            return [Copy(*r) for r in rows]

        return await self.state.run(q, transaction=True)

    async def prune(self) -> None:
        now = self.state.now()
        jobs, copies = (now - KEEP_JOBS).isoformat(), (now - KEEP_COPIES).isoformat()

        def q(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM relay_jobs WHERE status='done' AND created_at < ?", (jobs,))
            c.execute("DELETE FROM relay_copies WHERE at < ?", (copies,))

        await self.state.run(q, transaction=True)
