"""Durable reminders and their exactly-once firing.

A reminder row holds where to post (platform, chat id, title, thread: the chat is rebuilt from it), whom to
mention, the text, the next due time and an optional recurrence rule (``bot.skills.timeparse``). Each
group numbers its reminders 1, 2, 3... (``no``) so members can cancel "#3".

Firing is claim-then-send. In one transaction ``claim_due`` inserts a *firing* row (primary key: reminder
and due time) in state ``sending`` and moves the reminder on (a one-off becomes ``fired``; a recurring one
gets its next occurrence strictly after *now*, so a long outage gives one late firing, never a burst). Only
then is the message sent; afterwards the firing becomes ``sent``. A crash between claim and send leaves a
``sending`` firing (``interrupted`` after the restart): where the platform deduplicates sends
(``capabilities.idempotent_sends``) it is resent with the same idempotency key, so it arrives exactly once;
elsewhere it is never sent again (at most once, logged). A send that raises is retried with backoff
(``retry``) up to ``MAX_ATTEMPTS``, then ``dead``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.events import ChatRef
from bot.skills.skilldb import SkillDB
from bot.skills.timeparse import next_occurrence

MAX_ATTEMPTS = 5
LATE_AFTER = timedelta(seconds=90)

SCHEMA = """
CREATE TABLE IF NOT EXISTS reminders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key TEXT NOT NULL,
    no INTEGER NOT NULL,
    platform TEXT NOT NULL, chat_id TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', thread TEXT,
    owner_id TEXT NOT NULL, owner_name TEXT NOT NULL,
    text TEXT NOT NULL,
    due_ts REAL NOT NULL,
    rule TEXT,
    status TEXT NOT NULL DEFAULT 'active',      -- active | fired | cancelled
    source TEXT NOT NULL DEFAULT '',            -- e.g. 'todo:<id>'
    origin TEXT UNIQUE,                         -- the request that made it (a replay makes no second one)
    created_ts REAL NOT NULL,
    UNIQUE (group_key, no)
);
CREATE INDEX IF NOT EXISTS reminders_due ON reminders(status, due_ts);
CREATE TABLE IF NOT EXISTS reminder_firings (
    reminder_id INTEGER NOT NULL,
    due_ts REAL NOT NULL,
    state TEXT NOT NULL,                        -- sending | sent | retry | dead | interrupted | unknown
    late INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_ts REAL,
    sent_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (reminder_id, due_ts)
);
"""

_COLS = "id, group_key, no, platform, chat_id, title, thread, owner_id, owner_name, text, due_ts, rule, status, source"


@dataclass(frozen=True, slots=True)
class Reminder:
    id: int
    group_key: str
    no: int
    chat: ChatRef
    thread: str | None
    owner_id: str
    owner_name: str
    text: str
    due: datetime
    rule: str | None
    status: str
    source: str


@dataclass(frozen=True, slots=True)
class Firing:
    reminder: Reminder
    due: datetime  # the occurrence being fired
    late: bool
    attempts: int = 0


class GroupFull(Exception):
    """The group already has as many active reminders as allowed."""


def _row(r: tuple) -> Reminder:
    (
        rid,
        gk,
        no,
        platform,
        chat_id,
        title,
        thread,
        owner_id,
        owner_name,
        text,
        due_ts,
        rule,
        status,
        source,
    ) = r
    return Reminder(
        rid,
        gk,
        no,
        ChatRef(platform, chat_id, title),
        thread,
        owner_id,
        owner_name,
        text,
        datetime.fromtimestamp(due_ts, timezone.utc),
        rule,
        status,
        source,
    )


def latest_missed(rem: Reminder, now: datetime, tz: ZoneInfo) -> datetime:
    """The occurrence to fire: the due time itself, or for a recurring reminder that missed several while
    the bot was down, the most recent one (fired once, late)."""
    occurrence = rem.due
    if rem.rule:
        for _ in range(1000):
            nxt = next_occurrence(rem.rule, occurrence, tz)
            if nxt > now:
                break
            occurrence = nxt
    return occurrence


class ReminderStore:
    def __init__(self, db: SkillDB) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)

    async def add(
        self,
        *,
        chat: ChatRef,
        thread: str | None,
        owner_id: str,
        owner_name: str,
        text: str,
        due: datetime,
        rule: str | None,
        cap: int,
        now: datetime,
        origin: str | None = None,
        source: str = "",
    ) -> Reminder:
        """Store a reminder; raises ``GroupFull`` past ``cap`` active ones. Idempotent on ``origin``."""

        def body(c: sqlite3.Connection) -> Reminder:
            if origin is not None:
                row = c.execute(f"SELECT {_COLS} FROM reminders WHERE origin=?", (origin,)).fetchone()
                if row:
                    return _row(row)
            (active,) = c.execute(
                "SELECT COUNT(*) FROM reminders WHERE group_key=? AND status='active'", (chat.key,)
            ).fetchone()
            if cap > 0 and active >= cap:
                raise GroupFull(f"this group already has {active} active reminders (the limit is {cap})")
            (no,) = c.execute(
                "SELECT COALESCE(MAX(no), 0) + 1 FROM reminders WHERE group_key=?", (chat.key,)
            ).fetchone()
            cur = c.execute(
                "INSERT INTO reminders(group_key, no, platform, chat_id, title, thread, owner_id, owner_name, text,"
                " due_ts, rule, source, origin, created_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    chat.key,
                    no,
                    chat.platform,
                    chat.chat_id,
                    chat.title,
                    thread,
                    owner_id,
                    owner_name,
                    text,
                    due.timestamp(),
                    rule,
                    source,
                    origin,
                    now.timestamp(),
                ),
            )
            return _row(c.execute(f"SELECT {_COLS} FROM reminders WHERE id=?", (cur.lastrowid,)).fetchone())

        return await self.db.tx(body)

    async def active(self, group_key: str) -> list[Reminder]:
        rows = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM reminders WHERE group_key=? AND status='active' ORDER BY due_ts, no",
                (group_key,),
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def get(self, group_key: str, no: int) -> Reminder | None:
        row = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM reminders WHERE group_key=? AND no=?", (group_key, no)
            ).fetchone()
        )
        return _row(row) if row else None

    async def cancel(self, group_key: str, no: int) -> bool:
        cur = await self.db.run(
            lambda c: c.execute(
                "UPDATE reminders SET status='cancelled' WHERE group_key=? AND no=? AND status='active'",
                (group_key, no),
            )
        )
        return cur.rowcount == 1

    async def cancel_source(self, group_key: str, source: str) -> int:
        cur = await self.db.run(
            lambda c: c.execute(
                "UPDATE reminders SET status='cancelled' WHERE group_key=? AND source=? AND status='active'",
                (group_key, source),
            )
        )
        return cur.rowcount

    # ----------------------------------------------------------------- firing

    async def candidates(self, now: datetime, limit: int = 50) -> list[Reminder]:
        rows = await self.db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM reminders WHERE status='active' AND due_ts<=? ORDER BY due_ts LIMIT ?",
                (now.timestamp(), limit),
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def claim(self, rem: Reminder, now: datetime, tz: ZoneInfo) -> Firing | None:
        """Atomically take this occurrence; None if it was already taken (by another runner or a past run)."""
        occurrence = latest_missed(rem, now, tz)
        late = now - occurrence > LATE_AFTER

        def body(c: sqlite3.Connection) -> Firing | None:
            if rem.rule:
                nxt = next_occurrence(rem.rule, max(now, rem.due), tz)
                cur = c.execute(
                    "UPDATE reminders SET due_ts=? WHERE id=? AND due_ts=? AND status='active'",
                    (nxt.timestamp(), rem.id, rem.due.timestamp()),
                )
            else:
                cur = c.execute(
                    "UPDATE reminders SET status='fired' WHERE id=? AND due_ts=? AND status='active'",
                    (rem.id, rem.due.timestamp()),
                )
            if cur.rowcount != 1:
                return None
            ins = c.execute(
                "INSERT OR IGNORE INTO reminder_firings(reminder_id, due_ts, state, late) VALUES (?,?,'sending',?)",
                (rem.id, occurrence.timestamp(), int(late)),
            )
            return Firing(rem, occurrence, late) if ins.rowcount == 1 else None

        return await self.db.tx(body)

    async def mark_sent(self, f: Firing, sent_id: str) -> None:
        await self.db.run(
            lambda c: c.execute(
                "UPDATE reminder_firings SET state='sent', sent_id=? WHERE reminder_id=? AND due_ts=?",
                (sent_id, f.reminder.id, f.due.timestamp()),
            )
        )

    async def mark_failed(self, f: Firing, now: datetime, delay_s: float) -> bool:
        """Count a failed send; True when it gave up (``dead``)."""
        attempts = f.attempts + 1
        state = "dead" if attempts >= MAX_ATTEMPTS else "retry"
        await self.db.run(
            lambda c: c.execute(
                "UPDATE reminder_firings SET state=?, attempts=?, retry_ts=? WHERE reminder_id=? AND due_ts=?",
                (state, attempts, now.timestamp() + delay_s, f.reminder.id, f.due.timestamp()),
            )
        )
        return state == "dead"

    async def claim_retries(self, now: datetime) -> list[Firing]:
        """Firings whose send failed and whose retry time has come, moved back to ``sending``."""

        def body(c: sqlite3.Connection) -> list[Firing]:
            rows = c.execute(
                f"SELECT f.due_ts, f.late, f.attempts, {', '.join('r.' + x.strip() for x in _COLS.split(','))} "
                "FROM reminder_firings f JOIN reminders r ON r.id=f.reminder_id "
                "WHERE f.state='retry' AND f.retry_ts<=?",
                (now.timestamp(),),
            ).fetchall()
            out = []
            for due_ts, late, attempts, *rest in rows:
                c.execute(
                    "UPDATE reminder_firings SET state='sending' WHERE reminder_id=? AND due_ts=?",
                    (rest[0], due_ts),
                )
                out.append(
                    Firing(
                        _row(tuple(rest)), datetime.fromtimestamp(due_ts, timezone.utc), bool(late), attempts
                    )
                )
            return out

        return await self.db.tx(body)

    async def mark_interrupted(self) -> int:
        """At start: firings left ``sending`` by a crash may or may not have reached the chat. They become
        ``interrupted`` until their platform is connected and ``resolve_interrupted`` decides."""
        cur = await self.db.run(
            lambda c: c.execute("UPDATE reminder_firings SET state='interrupted' WHERE state='sending'")
        )
        return cur.rowcount

    async def interrupted(self) -> list[Firing]:
        def body(c: sqlite3.Connection) -> list[Firing]:
            rows = c.execute(
                f"SELECT f.due_ts, f.late, f.attempts, {', '.join('r.' + x.strip() for x in _COLS.split(','))} "
                "FROM reminder_firings f JOIN reminders r ON r.id=f.reminder_id WHERE f.state='interrupted'"
            ).fetchall()
            return [
                Firing(_row(tuple(rest)), datetime.fromtimestamp(due_ts, timezone.utc), bool(late), attempts)
                for due_ts, late, attempts, *rest in rows
            ]

        return await self.db.run(body)

    async def set_firing_state(self, f: Firing, state: str) -> None:
        await self.db.run(
            lambda c: c.execute(
                "UPDATE reminder_firings SET state=? WHERE reminder_id=? AND due_ts=?",
                (state, f.reminder.id, f.due.timestamp()),
            )
        )

    async def firings(self, reminder_id: int) -> list[tuple[float, str, bool]]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT due_ts, state, late FROM reminder_firings WHERE reminder_id=? ORDER BY due_ts",
                (reminder_id,),
            ).fetchall()
        )
        return [(ts, state, bool(late)) for ts, state, late in rows]
