"""The core's durable state in SQLite (WAL): the inbox, adapter cursors, the reply ledger, usage and
per-group key/values.

The inbox is the ``IntakeSink`` adapters deliver to: ``submit`` commits the events and the adapter's cursor in
one transaction, so an acknowledged event is never lost and a replayed one is ignored (primary key on the
event id). Workers take pending events in arrival order, mark them done, or after ``max_attempts`` failures
move them to the dead-letter state so the stream behind them is not held up.

Adapters keep their own small durable state in ``adapter_kv`` (``store(name)``, a ``bot.ports.KeyValueStore``
per adapter), whose entries may expire and are pruned.

The reply ledger makes replies at-most-once across crashes: a reply is marked *sending* before the platform
call and *sent* after it; an event whose reply is already *sending* or *sent* is never answered again.
All SQLite work runs on one connection guarded by a lock, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from bot.errors import PaibotError
from bot.events import Message
from bot.ports import Usage

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    chat_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | done | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox(status, seq);
CREATE TABLE IF NOT EXISTS cursors (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replies (
    event_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,                      -- sending | retry (platform unreachable) | sent
    sent_id TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT ''          -- the Outgoing being sent (JSON), for resending after a crash
);
CREATE TABLE IF NOT EXISTS usage (
    group_key TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_key, day, model)
);
CREATE INDEX IF NOT EXISTS usage_day ON usage(day);
CREATE TABLE IF NOT EXISTS member_usage (                   -- a member's tokens across groups, per day
    member_key TEXT NOT NULL, day TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (member_key, day)
);
CREATE TABLE IF NOT EXISTS admitted_groups (                -- groups and direct chats the bot serves
    group_key TEXT PRIMARY KEY, admitted_at TEXT NOT NULL     -- '' for groups served before admission
);
CREATE TABLE IF NOT EXISTS group_kv (
    group_key TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (group_key, key)
);
CREATE TABLE IF NOT EXISTS adapter_kv (                -- bot.ports.KeyValueStore, one namespace per adapter
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    expires_at TEXT,                                  -- NULL: never; past: reads as absent, pruned
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS adapter_kv_expiry ON adapter_kv(expires_at) WHERE expires_at IS NOT NULL;
"""


def _days_before(day: str, n: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=n)).isoformat()


async def _awaited(future: Awaitable[None]) -> None:
    await future


@dataclass(frozen=True, slots=True)
class InboxItem:
    seq: int
    event: Message
    attempts: int


class StateDB:
    """The core's SQLite state. Thread-safe; every public coroutine runs its SQL off the event loop."""

    def __init__(self, path: Path | str, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        admitting_first_time = not self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='admitted_groups'"
        ).fetchone()
        self._conn.executescript(_SCHEMA)
        if admitting_first_time:  # groups served before admission existed are established, not new
            self._conn.execute(
                "INSERT OR IGNORE INTO admitted_groups(group_key, admitted_at) SELECT chat_key, '' FROM inbox "
                "UNION SELECT group_key, '' FROM group_kv UNION SELECT group_key, '' FROM usage"
            )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(replies)")}
        if "payload" not in columns:  # data directories from before replies kept their payload
            self._conn.execute("ALTER TABLE replies ADD COLUMN payload TEXT NOT NULL DEFAULT ''")
        self._lock = threading.Lock()
        # One thread of its own runs the SQL, in order: waiting for the connection never ties up threads of
        # the loop's shared pool (the adapters' stores and to_thread calls use those).
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="paibot-state")
        self._now = clock or (lambda: datetime.now(timezone.utc))
        self.new_events = asyncio.Event()
        self._unflushed: dict[str, int] = {}
        self._unflushed_members: dict[str, int] = {}
        self._unflushed_bot = [0, 0, 0.0]  # prompt tokens, completion tokens, cost not yet written
        self._usage_writes: set[asyncio.Task[None]] = set()
        self._intake_closed = False

    def close_intake(self) -> None:
        """Refuse new events from now on (a graceful stop has begun): ``submit`` with events raises, so the
        adapter does not acknowledge them and the platform (or the poster) delivers them again after the
        restart. Cursor-only submits (adapter bookkeeping such as send records) still commit."""
        self._intake_closed = True

    def close(self) -> None:
        self._exec.shutdown(wait=True)
        with self._lock:
            self._conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._exec, locked)

    def _tx(self, conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = body(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    # ----------------------------------------------------------------- IntakeSink

    async def submit(
        self, events: Sequence[Message], *, cursor_key: str | None = None, cursor: str | None = None
    ) -> int:
        if events and self._intake_closed:
            raise PaibotError("the bot is stopping and takes no new events; they will be taken after the restart")
        rows = [(e.event_id, e.chat.key, json.dumps(e.to_dict(), ensure_ascii=False)) for e in events]
        now = self._now().isoformat()

        def body(conn: sqlite3.Connection) -> int:
            new = 0
            for event_id, chat_key, payload in rows:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO inbox(event_id, chat_key, payload, received_at) VALUES (?,?,?,?)",
                    (event_id, chat_key, payload, now),
                )
                new += cur.rowcount
            if cursor_key is not None and cursor is not None:
                conn.execute(
                    "INSERT INTO cursors(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (cursor_key, cursor),
                )
            return new

        new = await self._run(lambda c: self._tx(c, body))
        if new:
            self.new_events.set()
        return new

    async def cursor(self, key: str) -> str | None:
        row = await self._run(lambda c: c.execute("SELECT value FROM cursors WHERE key=?", (key,)).fetchone())
        return row[0] if row else None

    async def seen(self, event_id: str) -> bool:
        row = await self._run(lambda c: c.execute("SELECT 1 FROM inbox WHERE event_id=?", (event_id,)).fetchone())
        return row is not None

    async def set_cursor(self, key: str, value: str) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO cursors(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )
        )

    # ----------------------------------------------------------------- worker side

    async def pending(self, limit: int = 200, after_seq: int = 0) -> list[InboxItem]:
        def q(c: sqlite3.Connection) -> list[tuple[int, str, int]]:
            return c.execute(
                "SELECT seq, payload, attempts FROM inbox WHERE status='pending' AND seq>? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()

        out: list[InboxItem] = []
        for seq, payload, attempts in await self._run(q):
            out.append(InboxItem(seq, Message.from_dict(json.loads(payload)), attempts))
        return out

    async def mark_done(self, seq: int) -> None:
        await self._run(lambda c: c.execute("UPDATE inbox SET status='done' WHERE seq=?", (seq,)))

    async def mark_failed(self, seq: int, error: str, max_attempts: int) -> bool:
        """Count a failed attempt; returns True when the event was moved to the dead-letter state."""

        def body(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "UPDATE inbox SET attempts=attempts+1, last_error=? WHERE seq=?", (error[:2000], seq)
            )
            (attempts,) = conn.execute("SELECT attempts FROM inbox WHERE seq=?", (seq,)).fetchone()
            if attempts >= max_attempts:
                conn.execute("UPDATE inbox SET status='dead' WHERE seq=?", (seq,))
                return True
            return False

        return await self._run(lambda c: self._tx(c, body))

    async def counts(self) -> dict[str, int]:
        rows = await self._run(lambda c: c.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status").fetchall())
        return {status: n for status, n in rows}

    async def dead_letters(self) -> list[tuple[str, str, int]]:
        return await self._run(
            lambda c: c.execute("SELECT event_id, last_error, attempts FROM inbox WHERE status='dead'").fetchall()
        )

    # ----------------------------------------------------------------- reply ledger

    async def claim_reply(self, event_id: str, payload: str = "") -> bool:
        """Mark that a reply to ``event_id`` (``payload``: what is being sent) is about to be sent; False if
        one was already claimed."""
        now = self._now().isoformat()
        cur = await self._run(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO replies(event_id, state, at, payload) VALUES (?, 'sending', ?, ?)",
                (event_id, now, payload),
            )
        )
        return cur.rowcount == 1

    async def move_reply(self, event_id: str, from_state: str, to_state: str) -> bool:
        """Move a reply between ledger states (``sending`` -> ``retry`` when the platform was unreachable and
        nothing was delivered, back to ``sending`` before the next try); False if it was not in ``from_state``."""
        cur = await self._run(
            lambda c: c.execute(
                "UPDATE replies SET state=? WHERE event_id=? AND state=?", (to_state, event_id, from_state)
            )
        )
        return cur.rowcount == 1

    async def update_reply_payload(self, event_id: str, payload: str) -> None:
        """Replace what the ledger keeps of a reply that is still being sent (a streamed reply's final text)."""
        await self._run(
            lambda c: c.execute(
                "UPDATE replies SET payload=? WHERE event_id=? AND state='sending'", (payload, event_id)
            )
        )

    async def reply_payload(self, event_id: str) -> str:
        row = await self._run(
            lambda c: c.execute("SELECT payload FROM replies WHERE event_id=?", (event_id,)).fetchone()
        )
        return row[0] if row else ""

    async def reply_sent(self, event_id: str, sent_id: str) -> None:
        now = self._now().isoformat()
        await self._run(
            lambda c: c.execute(
                "UPDATE replies SET state='sent', sent_id=?, at=? WHERE event_id=?", (sent_id, now, event_id)
            )
        )

    async def release_reply(self, event_id: str) -> None:
        """Forget a claim whose send failed before the platform took it, so a retry may send again."""
        await self._run(lambda c: c.execute("DELETE FROM replies WHERE event_id=? AND state='sending'", (event_id,)))

    async def reply_state(self, event_id: str) -> str | None:
        row = await self._run(lambda c: c.execute("SELECT state FROM replies WHERE event_id=?", (event_id,)).fetchone())
        return row[0] if row else None

    # ----------------------------------------------------------------- usage (UsageLedger)

    def _day(self) -> str:
        return self._now().date().isoformat()

    def add_usage(self, group_key: str, model: str, usage: Usage, member_key: str = "") -> None:
        """Count usage now (the ``*_today`` figures see it at once); the SQLite write runs off the event loop.
        ``member_key`` is the member whose message the call answered ("" when no member asked)."""
        tokens = usage.prompt_tokens + usage.completion_tokens
        self._unflushed[group_key] = self._unflushed.get(group_key, 0) + tokens
        if member_key:
            self._unflushed_members[member_key] = self._unflushed_members.get(member_key, 0) + tokens
        self._unflushed_bot[0] += usage.prompt_tokens
        self._unflushed_bot[1] += usage.completion_tokens
        self._unflushed_bot[2] += usage.cost_usd
        args = (group_key, self._day(), model, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_usage(args, member_key)
            return
        write = loop.run_in_executor(self._exec, self._write_usage, args, member_key)
        task = loop.create_task(_awaited(write), name="usage-write")
        self._usage_writes.add(task)
        task.add_done_callback(self._usage_writes.discard)

    def _write_usage(self, args: tuple[Any, ...], member_key: str) -> None:
        group_key, day, _, prompt, completion, cost = args
        tokens = prompt + completion
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    """INSERT INTO usage(group_key, day, model, prompt_tokens, completion_tokens, cost_usd, calls)
                       VALUES (?,?,?,?,?,?,1)
                       ON CONFLICT(group_key, day, model) DO UPDATE SET
                         prompt_tokens=prompt_tokens+excluded.prompt_tokens,
                         completion_tokens=completion_tokens+excluded.completion_tokens,
                         cost_usd=cost_usd+excluded.cost_usd, calls=calls+1""",
                    args,
                )
                if member_key:
                    self._conn.execute(
                        """INSERT INTO member_usage(member_key, day, tokens, cost_usd, calls) VALUES (?,?,?,?,1)
                           ON CONFLICT(member_key, day) DO UPDATE SET tokens=tokens+excluded.tokens,
                             cost_usd=cost_usd+excluded.cost_usd, calls=calls+1""",
                        (member_key, day, tokens, cost),
                    )
                    # only today's figures are ever read: older rows of members go (they name a person)
                    self._conn.execute("DELETE FROM member_usage WHERE day < ?", (_days_before(day, 1),))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._unflushed[group_key] -= tokens
            if member_key:
                self._unflushed_members[member_key] -= tokens
            self._unflushed_bot[0] -= prompt
            self._unflushed_bot[1] -= completion
            self._unflushed_bot[2] -= cost

    async def flush(self) -> None:
        """Wait for pending usage writes (called before closing)."""
        if self._usage_writes:
            await asyncio.gather(*list(self._usage_writes), return_exceptions=True)

    def tokens_today(self, group_key: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(prompt_tokens+completion_tokens),0) FROM usage WHERE group_key=? AND day=?",
                (group_key, self._day()),
            ).fetchone()
            return int(row[0]) + self._unflushed.get(group_key, 0)

    def member_tokens_today(self, member_key: str) -> int:
        """Tokens spent today answering ``member_key`` ("platform:user_id"), across every group."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(tokens),0) FROM member_usage WHERE member_key=? AND day=?",
                (member_key, self._day()),
            ).fetchone()
            return int(row[0]) + self._unflushed_members.get(member_key, 0)

    def bot_today(self) -> Usage:
        """Everything spent today, all groups together (prompt tokens, completion tokens, cost)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
                "COALESCE(SUM(cost_usd),0) FROM usage WHERE day=?",
                (self._day(),),
            ).fetchone()
            prompt, completion, cost = self._unflushed_bot
            return Usage(int(row[0]) + int(prompt), int(row[1]) + int(completion), float(row[2]) + cost)

    async def usage_report(self, group_key: str | None = None) -> list[dict[str, Any]]:
        def q(c: sqlite3.Connection) -> list[Any]:
            sql = "SELECT group_key, day, model, prompt_tokens, completion_tokens, cost_usd, calls FROM usage"
            args: tuple[Any, ...] = ()
            if group_key:
                sql += " WHERE group_key=?"
                args = (group_key,)
            return c.execute(sql + " ORDER BY day, group_key", args).fetchall()

        cols = ("group_key", "day", "model", "prompt_tokens", "completion_tokens", "cost_usd", "calls")
        return [dict(zip(cols, r)) for r in await self._run(q)]

    # ----------------------------------------------------------------- admission of new groups

    async def is_admitted(self, group_key: str) -> bool:
        row = await self._run(
            lambda c: c.execute("SELECT 1 FROM admitted_groups WHERE group_key=?", (group_key,)).fetchone()
        )
        return row is not None

    async def admit_group(self, group_key: str, at: datetime) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO admitted_groups(group_key, admitted_at) VALUES (?, ?)",
                (group_key, at.astimezone(timezone.utc).isoformat()),
            )
        )

    async def admitted_since(self, since: datetime) -> list[datetime]:
        """When the groups admitted after ``since`` were admitted (oldest first)."""
        rows = await self._run(
            lambda c: c.execute(
                "SELECT admitted_at FROM admitted_groups WHERE admitted_at > ? ORDER BY admitted_at",
                (since.astimezone(timezone.utc).isoformat(),),
            ).fetchall()
        )
        return [datetime.fromisoformat(r[0]) for r in rows]

    # ----------------------------------------------------------------- per-group key/values

    async def group_get(self, group_key: str, key: str) -> str | None:
        row = await self._run(
            lambda c: c.execute("SELECT value FROM group_kv WHERE group_key=? AND key=?", (group_key, key)).fetchone()
        )
        return row[0] if row else None

    async def group_set(self, group_key: str, key: str, value: str) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO group_kv(group_key, key, value) VALUES (?,?,?) "
                "ON CONFLICT(group_key, key) DO UPDATE SET value=excluded.value",
                (group_key, key, value),
            )
        )

    async def group_delete(self, group_key: str, key: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM group_kv WHERE group_key=? AND key=?", (group_key, key)))

    async def group_set_once(self, group_key: str, key: str, value: str) -> bool:
        """Set a key only if absent; True if this call set it (used for one-time notices)."""
        cur = await self._run(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO group_kv(group_key, key, value) VALUES (?,?,?)", (group_key, key, value)
            )
        )
        return cur.rowcount == 1

    # ----------------------------------------------------------------- adapters' key/values

    async def kv_get(self, namespace: str, key: str) -> str | None:
        now = self._now().isoformat()
        row = await self._run(
            lambda c: c.execute(
                "SELECT value FROM adapter_kv WHERE namespace=? AND key=? AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, now),
            ).fetchone()
        )
        return row[0] if row else None

    async def kv_put(self, namespace: str, key: str, value: str, expires_at: datetime | None = None) -> None:
        until = expires_at.isoformat() if expires_at is not None else None
        await self._run(
            lambda c: c.execute(
                "INSERT INTO adapter_kv(namespace, key, value, expires_at) VALUES (?,?,?,?) "
                "ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value, expires_at=excluded.expires_at",
                (namespace, key, value, until),
            )
        )

    async def kv_delete(self, namespace: str, key: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM adapter_kv WHERE namespace=? AND key=?", (namespace, key)))

    async def kv_prune(self) -> int:
        """Delete every expired entry; returns how many went."""
        now = self._now().isoformat()
        cur = await self._run(
            lambda c: c.execute("DELETE FROM adapter_kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        )
        return cur.rowcount

    def store(self, namespace: str) -> StateKeyValueStore:
        """The ``bot.ports.KeyValueStore`` of one adapter (its entries live under ``namespace``)."""
        return StateKeyValueStore(self, namespace)


class StateKeyValueStore:
    """``bot.ports.KeyValueStore`` over ``StateDB``'s adapter_kv table, for one namespace. Expired entries read
    as absent; every ``PRUNE_EVERY`` writes the store deletes the expired entries of every namespace (and the
    app prunes once at start), so a journal written once per reply does not grow without bound."""

    PRUNE_EVERY = 200

    def __init__(self, state: StateDB, namespace: str) -> None:
        self._state = state
        self.namespace = namespace
        self._writes = 0

    async def get(self, key: str) -> str | None:
        return await self._state.kv_get(self.namespace, key)

    async def put(self, key: str, value: str, *, ttl_s: float | None = None) -> None:
        expires = self._state._now() + timedelta(seconds=ttl_s) if ttl_s is not None else None
        await self._state.kv_put(self.namespace, key, value, expires)
        self._writes += 1
        if self._writes % self.PRUNE_EVERY == 0:
            await self._state.kv_prune()

    async def delete(self, key: str) -> None:
        await self._state.kv_delete(self.namespace, key)
