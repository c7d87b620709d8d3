"""How the skills' own tables (``skills.sqlite3``) forget: the ``ContentEraser`` of reminders, the to-do and
decision register, and polls with their votes.

    a member's erasure   her reminders and polls are cancelled and emptied (text, question, options and her
                         name removed; a cancelled reminder never fires, a cancelled poll is never
                         announced); to-dos she owns or added, and register items quoting her, are marked
                         removed and emptied (their numbers stay taken, so "done 3" never changes meaning),
                         with their reminders; her votes are deleted
    retention            reminders, polls and to-dos that are no longer live (fired, cancelled, closed, done,
                         removed) and decisions, created before the cutoff, are deleted

A table a skill never created (the skill is not installed) is skipped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from bot.ports import Erasure
from bot.skills.skilldb import SkillDB
from bot.state import checkpoint


class SkillTablesEraser:
    def __init__(self, db: SkillDB) -> None:
        self.db = db

    async def passages(self, erasure: Erasure) -> Sequence[str]:
        if erasure.author_id is None or not erasure.chat_keys:
            return []

        def read(c: sqlite3.Connection) -> list[str]:
            tables = _tables(c)
            out: list[str] = []
            chats, args = _in(erasure.chat_keys)
            if "reminders" in tables:
                out += [r[0] for r in c.execute(
                    f"SELECT text FROM reminders WHERE owner_id=? AND group_key IN {chats}", (erasure.author_id, *args))]
            if "register_items" in tables:
                out += [r[0] for r in c.execute(
                    f"SELECT text FROM register_items WHERE group_key IN {chats} AND (owner_id=? OR"
                    " (requester_id=? AND source='manual'))", (*args, erasure.author_id, erasure.author_id))]
            if "polls" in tables:
                for q, opts in c.execute(
                    f"SELECT question, options FROM polls WHERE opener_id=? AND group_key IN {chats}",
                    (erasure.author_id, *args),
                ):
                    out += [q, *json.loads(opts)]
            return [t for t in out if t]

        return await self.db.run(read)

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        if not erasure.chat_keys:
            return {}

        def body(c: sqlite3.Connection) -> dict[str, int]:
            tables = _tables(c)
            counts: dict[str, int] = {}
            if erasure.author_id is not None:
                counts.update(_erase_member(c, tables, erasure))
            if erasure.before is not None:
                counts.update(_expire(c, tables, erasure))
            return counts

        counts = await self.db.tx(body)
        if any(counts.values()):
            await self.db.run(checkpoint)
        return counts


def _tables(c: sqlite3.Connection) -> set[str]:
    return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _in(values: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    return f"({','.join('?' * len(values))})", tuple(values)


def _erase_member(c: sqlite3.Connection, tables: set[str], e: Erasure) -> dict[str, int]:
    chats, args = _in(e.chat_keys)
    who = e.author_id
    counts: dict[str, int] = {}
    if "register_items" in tables:
        doomed = [
            (rid, text) for rid, text, owner, requester, source in c.execute(
                f"SELECT id, text, owner_id, requester_id, source FROM register_items WHERE group_key IN {chats}"
                " AND status!='removed'", args)
            if owner == who or (requester == who and source == "manual") or e.quoted_in(text)
        ]  # fmt: skip
        for rid, _ in doomed:
            c.execute("UPDATE register_items SET status='removed', text='', owner_name='' WHERE id=?", (rid,))
            if "reminders" in tables:
                c.execute("UPDATE reminders SET status='cancelled', text='', owner_name='' WHERE source=?",
                          (f"todo:{rid}",))
        counts["to-dos and decisions"] = len(doomed)
    if "reminders" in tables:
        cur = c.execute(
            f"UPDATE reminders SET status='cancelled', text='', owner_name='' WHERE owner_id=? AND group_key IN {chats}"
            " AND (text!='' OR owner_name!='' OR status='active')", (who, *args))
        counts["reminders"] = cur.rowcount
    if "polls" in tables:
        cur = c.execute(
            f"UPDATE polls SET status='cancelled', question='', options='[]', opener_name='' WHERE opener_id=?"
            f" AND group_key IN {chats} AND status!='cancelled'", (who, *args))
        counts["polls"] = cur.rowcount
        cur = c.execute(
            f"DELETE FROM poll_votes WHERE voter_id=? AND poll_id IN (SELECT id FROM polls WHERE group_key IN {chats})",
            (who, *args))
        counts["votes"] = cur.rowcount
    return counts


def _expire(c: sqlite3.Connection, tables: set[str], e: Erasure) -> dict[str, int]:
    assert e.before is not None
    chats, args = _in(e.chat_keys)
    cutoff = e.before.timestamp()
    counts: dict[str, int] = {}
    if "reminders" in tables:
        old = f"SELECT id FROM reminders WHERE status!='active' AND created_ts<? AND group_key IN {chats}"
        c.execute(f"DELETE FROM reminder_firings WHERE reminder_id IN ({old})", (cutoff, *args))
        counts["reminders"] = c.execute(f"DELETE FROM reminders WHERE id IN ({old})", (cutoff, *args)).rowcount
    if "register_items" in tables:
        counts["to-dos and decisions"] = c.execute(
            f"DELETE FROM register_items WHERE created_ts<? AND group_key IN {chats}"
            " AND (kind='decision' OR status!='open')", (cutoff, *args)).rowcount
    if "polls" in tables:
        old = f"SELECT id FROM polls WHERE status IN ('closed', 'cancelled') AND created_ts<? AND group_key IN {chats}"
        counts["votes"] = c.execute(f"DELETE FROM poll_votes WHERE poll_id IN ({old})", (cutoff, *args)).rowcount
        counts["polls"] = c.execute(f"DELETE FROM polls WHERE id IN ({old})", (cutoff, *args)).rowcount
    return counts
