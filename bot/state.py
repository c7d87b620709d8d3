"""The core's durable state in SQLite (WAL): the inbox, adapter cursors, the reply ledger, usage and
per-group key/values.

The inbox is the ``IntakeSink`` adapters deliver to: ``submit`` commits the events and the adapter's cursor in
one transaction, so an acknowledged event is never lost and a replayed one is ignored (primary key on the
event id). Workers take pending events in arrival order, mark them done, or after ``max_attempts`` failures
move them to the dead-letter state so the stream behind them is not held up.

The inbox is a queue, not an archive. The intake policy (``bot.intake.IntakePolicy``) decides inside the
submit transaction, before anything is written: a refused event leaves only its id (status ``refused``),
so a redelivery is still recognised. An event's payload (the message as JSON) is kept only while it waits:
marking it done or dead empties it, and ``erase`` (``ContentEraser``) removes a member's waiting events.

Adapters keep their own small durable state in ``adapter_kv`` (``store(name)``, a ``bot.ports.KeyValueStore``
per adapter), whose entries may expire and are pruned.

The reply ledger makes replies at-most-once across crashes: a reply is marked *sending* before the platform
call and *sent* after it; an event whose reply is already *sending* or *sent* is never answered again. It
keeps what is being sent (to resend it after a crash) only until it is sent.
All SQLite work runs on one connection guarded by a lock, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import PaibotError
from bot.events import Message
from bot.ports import Erasure, Usage

if TYPE_CHECKING:
    from bot.events import ChatRef
    from bot.intake import IntakePolicy

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    chat_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | done | dead | refused (payload '' unless pending)
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
class _Submit:
    """A call of ``StateDB.submit`` waiting for the next shared commit."""

    events: Sequence[Message]
    cursor_key: str | None
    cursor: str | None
    done: asyncio.Future[int]


@dataclass(frozen=True, slots=True)
class InboxItem:
    seq: int
    event: Message
    attempts: int


class _Flags:
    """``GroupFlags`` read on the connection of the transaction that asks."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, group_key: str, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM group_kv WHERE group_key=? AND key=?", (group_key, key)).fetchone()
        return row[0] if row else None


class StateDB:
    """The core's SQLite state. Thread-safe; every public coroutine runs its SQL off the event loop.
    ``policy`` decides which submitted events are kept (None: all, for tests of the inbox alone)."""

    def __init__(
        self, path: Path | str, clock: Callable[[], datetime] | None = None, policy: IntakePolicy | None = None
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._conn.execute("PRAGMA secure_delete=ON")  # emptied payloads are overwritten, not left in free pages
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
        self._forget_handled_payloads()
        self._policy = policy
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
        self._submits: list[_Submit] = []  # submits waiting for the next commit (see submit)
        self._submitter: asyncio.Task[None] | None = None

    def _forget_handled_payloads(self) -> None:
        """Data directories from before the inbox was a queue kept every payload: drop those no longer
        needed (handled events, sent replies). Cheap when there are none."""
        self._conn.execute("UPDATE inbox SET payload='' WHERE status!='pending' AND payload!=''")
        self._conn.execute("UPDATE replies SET payload='' WHERE state='sent' AND payload!=''")

    def serves(self, chat: ChatRef) -> bool:
        """Whether events of this chat are taken at all (``IntakePolicy.serves``)."""
        return self._policy is None or self._policy.serves(chat)

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

    def now(self) -> datetime:
        """The current time of the injected clock (aware, UTC)."""
        return self._now()

    def add_tables(self, ddl: str) -> None:
        """Create another core component's tables in this database (``CREATE ... IF NOT EXISTS`` statements),
        so its rows share the inbox's durability and its transactions (``run``)."""
        with self._lock:
            self._conn.executescript(ddl)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = False) -> T:
        """Run ``fn`` with the database connection off the event loop (in one transaction if asked): for
        core components that keep their own tables here (``add_tables``)."""
        if transaction:
            return await self._run(lambda c: run_transaction(c, fn))
        return await self._run(fn)

    # ----------------------------------------------------------------- IntakeSink

    async def submit(
        self, events: Sequence[Message], *, cursor_key: str | None = None, cursor: str | None = None
    ) -> int:
        """Commit ``events`` (and the adapter's cursor) durably; returns how many were new. Concurrent
        submits share commits: while one transaction is on disk, the submits that arrive wait and then go
        in the next one together (one disk sync for all), each in a savepoint of its own (one that fails
        fails alone), each call returning once its own events are committed."""
        if events and self._intake_closed:
            raise PaibotError("the bot is stopping and takes no new events; they will be taken after the restart")
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._submits.append(_Submit(events, cursor_key, cursor, done))
        if self._submitter is None or self._submitter.done():
            loop = asyncio.get_running_loop()
            self._submitter = loop.create_task(self._commit_submits(), name="paibot-inbox-commit")
        return await asyncio.shield(done)

    async def _commit_submits(self) -> None:
        """Commit what ``submit`` queued, all that waits in one transaction, until nothing waits. Runs as its
        own task: a caller cancelled while waiting cancels nobody else's commit."""
        while self._submits:
            batch, self._submits = self._submits, []
            now = self._now().isoformat()
            try:
                outcomes = await self._run(lambda c: run_transaction(c, lambda conn: [
                    self._submit_one(conn, item, now) for item in batch
                ]))  # fmt: skip
            except BaseException as exc:  # the commit failed: nothing of the batch is stored
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc if isinstance(exc, Exception) else PaibotError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for item, outcome in zip(batch, outcomes):
                if item.done.done():
                    continue
                if isinstance(outcome, Exception):
                    item.done.set_exception(outcome)
                else:
                    item.done.set_result(outcome[0])
            if any(not isinstance(o, Exception) and o[1] for o in outcomes):
                self.new_events.set()

    def _submit_one(self, conn: sqlite3.Connection, item: _Submit, now: str) -> tuple[int, int] | Exception:
        """One submit inside the shared transaction, in a savepoint: ``(new, queued)``, or the exception
        that rolled it (alone) back."""
        policy = self._policy
        conn.execute("SAVEPOINT submit")
        try:
            new = queued = 0
            flags = _Flags(conn)
            for e in item.events:
                if conn.execute("SELECT 1 FROM inbox WHERE event_id=?", (e.event_id,)).fetchone():
                    continue
                if policy is None or policy.admit(e, flags):
                    payload, status = json.dumps(e.to_dict(), ensure_ascii=False), "pending"
                    queued += 1
                else:  # refused: only the id stays, so a redelivery is recognised
                    payload, status = "", "refused"
                conn.execute(
                    "INSERT INTO inbox(event_id, chat_key, payload, status, received_at) VALUES (?,?,?,?,?)",
                    (e.event_id, e.chat.key, payload, status, now),
                )
                new += 1
            if item.cursor_key is not None and item.cursor is not None:
                conn.execute(
                    "INSERT INTO cursors(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (item.cursor_key, item.cursor),
                )
        except Exception as exc:
            conn.execute("ROLLBACK TO submit")
            conn.execute("RELEASE submit")
            return exc
        conn.execute("RELEASE submit")
        return new, queued

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
        await self._run(lambda c: c.execute("UPDATE inbox SET status='done', payload='' WHERE seq=?", (seq,)))

    async def mark_failed(self, seq: int, error: str, max_attempts: int) -> bool:
        """Count a failed attempt; returns True when the event was moved to the dead-letter state."""

        def body(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "UPDATE inbox SET attempts=attempts+1, last_error=? WHERE seq=?", (error[:2000], seq)
            )
            (attempts,) = conn.execute("SELECT attempts FROM inbox WHERE seq=?", (seq,)).fetchone()
            if attempts >= max_attempts:
                conn.execute("UPDATE inbox SET status='dead', payload='' WHERE seq=?", (seq,))
                return True
            return False

        return await self._run(lambda c: run_transaction(c, body))

    async def counts(self) -> dict[str, int]:
        rows = await self._run(lambda c: c.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status").fetchall())
        return {status: n for status, n in rows}

    async def dead_letters(self) -> list[tuple[str, str, int]]:
        return await self._run(
            lambda c: c.execute("SELECT event_id, last_error, attempts FROM inbox WHERE status='dead'").fetchall()
        )

    # ----------------------------------------------------------------- forgetting (ContentEraser)

    def _waiting(self, conn: sqlite3.Connection, e: Erasure) -> list[tuple[int, Message]]:
        marks = ",".join("?" * len(e.chat_keys))
        rows = conn.execute(
            f"SELECT seq, payload FROM inbox WHERE status='pending' AND chat_key IN ({marks})", e.chat_keys
        ).fetchall()
        return [(seq, Message.from_dict(json.loads(payload))) for seq, payload in rows if payload]

    @staticmethod
    def _forgets(e: Erasure, msg: Message) -> bool:
        hers = e.author_id is not None and msg.author.user_id == e.author_id and not msg.from_me
        return hers or msg.id in e.message_ids or (e.before is not None and msg.sent_at < e.before)

    async def passages(self, erasure: Erasure) -> list[str]:
        """The texts of waiting events that ``erasure`` forgets."""
        waiting = await self._run(lambda c: self._waiting(c, erasure))
        return [m.text for _, m in waiting if self._forgets(erasure, m)]

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """Waiting events the erasure forgets leave only their id (as if refused); a waiting event quoting a
        forgotten message loses the quote; a reply still in the ledger that mentions the member or quotes
        her loses its payload (it can then no longer be resent after a crash)."""
        e = erasure

        def body(conn: sqlite3.Connection) -> dict[str, int]:
            dropped = quotes = replies = 0
            for seq, msg in self._waiting(conn, e):
                if self._forgets(e, msg):
                    conn.execute("UPDATE inbox SET status='refused', payload='' WHERE seq=?", (seq,))
                    dropped += 1
                elif msg.reply_to is not None and (
                    (msg.reply_to.author is not None and msg.reply_to.author.user_id == e.author_id)
                    or msg.reply_to.message_id in e.message_ids or e.quoted_in(msg.reply_to.text)
                ):
                    quiet = dataclasses.replace(msg, reply_to=dataclasses.replace(msg.reply_to, text=""))
                    payload = json.dumps(quiet.to_dict(), ensure_ascii=False)
                    conn.execute("UPDATE inbox SET payload=? WHERE seq=?", (payload, seq))
                    quotes += 1
            if e.author_id is not None or e.message_ids:
                for event_id, payload in conn.execute("SELECT event_id, payload FROM replies WHERE payload!=''").fetchall():
                    data = json.loads(payload)
                    if e.author_id in data.get("mention_user_ids", ()) or e.quoted_in(str(data.get("text", ""))):
                        conn.execute("UPDATE replies SET payload='' WHERE event_id=?", (event_id,))
                        replies += 1
            return {"queued events": dropped, "quotes in queued events": quotes, "replies being sent": replies}

        counts = await self._run(lambda c: run_transaction(c, body))
        if any(counts.values()):
            await self._run(checkpoint)
        return counts

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
                "UPDATE replies SET state=?, payload=CASE WHEN ?='sent' THEN '' ELSE payload END"
                " WHERE event_id=? AND state=?", (to_state, to_state, event_id, from_state)
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
                "UPDATE replies SET state='sent', sent_id=?, at=?, payload='' WHERE event_id=?", (sent_id, now, event_id)
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


def run_transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """``body`` in one immediate transaction on ``conn`` (autocommit mode). Whatever fails, the commit
    included, rolls back: a shared connection is never left inside a transaction (every later write on it
    would fail)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


def checkpoint(conn: sqlite3.Connection) -> None:
    """Move the WAL into the database and truncate it (it would keep old copies of deleted pages). The
    pragma returns a row: it is read to the end here, because a statement left unfinished on a connection
    makes every later COMMIT there fail ("SQL statements in progress") for as long as its cursor lives."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
