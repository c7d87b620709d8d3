"""The web group's own durable store: groups and their messages in SQLite (WAL).

The local web group is its own platform, so it keeps its own record of what was said, independent of the
core's memory. Contract:

* Every method is blocking and meant to run off the event loop (``asyncio.to_thread``); one connection is
  shared behind a lock, so calls from several threads are serialised. Posting writes (``add_message``,
  ``mark_delivered``) from several threads share commits: those that arrive while one transaction is on
  disk go in the next one together, each in a savepoint of its own, each call returning once it is durable.
* A user message is written ``pending`` first and becomes visible (``list_messages``) only once
  ``mark_delivered`` says the core's inbox committed it. After a crash, ``pending`` returns what still has to
  be handed to the inbox; ``discard`` removes a message the inbox refused.
* A group has a 6-digit ``number`` (shown to people; the core's chat id, so its memory key ``web:<number>``)
  and an ``address`` (128 random bits) that its page, API and socket paths use. Looking a group up by
  number is for groups that allow it (``join_by_number``, off for new groups). A store from before addresses
  is upgraded when opened: every group gets one and keeps its number (and everything keyed by it).
* Bot messages are written visible at once and are unique per idempotency key.
* Message ids grow monotonically across the whole store, so ``after=<id>`` paging is exact.
* Members (``adapters.web.members``): a person gets an ``author_id`` and a secret key when they first pick a nickname
  (``add_member``); only the key's SHA-256 is stored, and ``member_by_key`` is how a request proves who
  it is. A group's creator is its first admin (``group_admins``); admins can make other members admins.
  A member of another platform becomes one through a one-time sign-in link (``adapters.web.signin``,
  ``signin_tokens``).
* A message's files (``StoredFile`` rows; the bytes live in ``adapters.web.files.BlobDir``) are written in
  the same transaction as the message, and ``discard`` removes them with it. A bot message may carry a
  poll (``StoredPoll``), written in that transaction too.
* Forgetting (``redact``, ``expire``): a forgotten message keeps its row and id as an empty placeholder
  (``removed``: no text, no author name, no files, no poll), so the conversation around it still reads
  right ("message removed"); retention deletes old rows outright. Both return the removed files, whose
  bytes the caller deletes. ``secure_delete`` overwrites what was removed instead of leaving it in free
  pages.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from adapters.web.members import MemberTables
from adapters.web.signin import SIGNIN_SCHEMA, SignInTables
from bot.errors import PaibotError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    number TEXT PRIMARY KEY,                 -- 6 digits, shown to people; the group's key is web:<number>
    name TEXT NOT NULL,
    invite TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    address TEXT,                            -- the unguessable token of its page and API paths (unique index)
    join_by_number INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL REFERENCES groups(number),
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    is_bot INTEGER NOT NULL DEFAULT 0,
    text TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    reply_to INTEGER,
    edited INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 1,
    nonce TEXT,
    idem_key TEXT,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_grp_id ON messages (grp, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_nonce ON messages (grp, nonce) WHERE nonce IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idem ON messages (idem_key) WHERE idem_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    message_id INTEGER NOT NULL,
    grp TEXT NOT NULL,
    pos INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_message ON files (message_id, pos);
CREATE TABLE IF NOT EXISTS members (
    author_id TEXT PRIMARY KEY,
    nickname TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,          -- sha256 of the member key: the key itself is never stored
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS member_keys (     -- a member's other keys: one per browser signed in by a link
    key_hash TEXT PRIMARY KEY,
    author_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS member_keys_author ON member_keys (author_id, created_at);
CREATE TABLE IF NOT EXISTS group_admins (
    grp TEXT NOT NULL,
    author_id TEXT NOT NULL,
    PRIMARY KEY (grp, author_id)
);
CREATE TABLE IF NOT EXISTS polls (
    message_id INTEGER PRIMARY KEY,
    question TEXT NOT NULL,
    options TEXT NOT NULL,
    multiple INTEGER NOT NULL DEFAULT 0,
    closes_at TEXT
);
"""
_FILE_COLUMNS = "id, message_id, grp, pos, kind, name, mime, size"

_COLUMNS = "id, grp, author_id, author_name, is_bot, text, sent_at, reply_to, edited, delivered, nonce, removed"


class WebStoreError(PaibotError):
    """The web group's store failed (disk full, corrupt file)."""




@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group. ``number`` (six digits) is what people see and what the core keys it by (``web:<number>``);
    ``address`` (128 random bits) is the only way to reach it over HTTP, besides the ``invite`` and, where
    ``join_by_number`` allows it, the number."""

    number: str
    name: str
    invite: str
    created_at: datetime
    address: str = ""
    join_by_number: bool = False


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    group: str
    author_id: str
    author_name: str
    is_bot: bool
    text: str
    sent_at: datetime
    reply_to: int | None = None
    edited: bool = False
    delivered: bool = True
    nonce: str | None = None
    removed: bool = False  # forgotten: an empty placeholder


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file of a message; ``id`` names its bytes (``BlobDir.path(group, id)``) and is the attachment's
    ``source``."""

    id: str
    message_id: int
    group: str
    kind: str  # "image" (sniffed PNG/JPEG/GIF/WebP) | "file"
    name: str
    mime: str
    size: int


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file to attach to a message being added (its bytes already committed under ``id``)."""

    id: str
    kind: str
    name: str
    mime: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredPoll:
    message_id: int
    question: str
    options: tuple[str, ...]
    multiple: bool = False
    closes_at: datetime | None = None


def _file(row: tuple) -> StoredFile:
    return StoredFile(row[0], row[1], row[2], row[4], row[5], row[6], row[7])


def _poll(row: tuple) -> StoredPoll:
    return StoredPoll(row[0], row[1], tuple(json.loads(row[2])), bool(row[3]),
                      datetime.fromisoformat(row[4]) if row[4] else None)  # fmt: skip


_GROUP_COLUMNS = "number, name, invite, created_at, address, join_by_number"


def new_address() -> str:
    """A group's address: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def _group(row: tuple) -> StoredGroup:
    return StoredGroup(row[0], row[1], row[2], datetime.fromisoformat(row[3]), row[4], bool(row[5]))


def _message(row: tuple) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        group=row[1],
        author_id=row[2],
        author_name=row[3],
        is_bot=bool(row[4]),
        text=row[5],
        sent_at=datetime.fromisoformat(row[6]),
        reply_to=row[7],
        edited=bool(row[8]),
        delivered=bool(row[9]),
        nonce=row[10],
        removed=bool(row[11]),
    )


T = TypeVar("T")


class _Write:
    """A write waiting for the next shared commit (``WebStore._shared_commit``)."""

    __slots__ = ("work", "finished", "result", "error")

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.finished = False
        self.result: Any = None
        self.error: Exception | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


GROUPS_KEPT = 10_000  # groups kept in memory by number (the oldest entry goes first)


class WebStore(MemberTables, SignInTables):
    """SQLite store of web groups and messages (see the module docstring for the contract)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._members = {}
        self._queue_lock = threading.Lock()
        self._queued: list[_Write] = []  # writes waiting for the next shared commit (see _shared_commit)
        # groups found by number, address or invite; only set_join_by_number changes one (it drops them all)
        self._groups: dict[tuple[str, str], StoredGroup] = {}
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a 200 to the poster promises the message survives a power cut, not only a crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            self._db.executescript(SIGNIN_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
            if "removed" not in columns:  # a store from before messages could be forgotten
                self._db.execute("ALTER TABLE messages ADD COLUMN removed INTEGER NOT NULL DEFAULT 0")
            self._give_addresses()
        except sqlite3.Error as exc:
            raise WebStoreError(f"cannot open the web group store at {path}: {exc}") from exc

    def _give_addresses(self) -> None:
        """Upgrade a store from before group addresses: every group gets one, in one transaction. Its number
        (and so its key, memory, reminders) stays; such a group keeps admitting people by number (the way in
        its members knew until now) until an admin turns that off."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(groups)")}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if "address" not in columns:
                self._db.execute("ALTER TABLE groups ADD COLUMN address TEXT")
            if "join_by_number" not in columns:
                self._db.execute("ALTER TABLE groups ADD COLUMN join_by_number INTEGER NOT NULL DEFAULT 0")
            old = [r[0] for r in self._db.execute("SELECT number FROM groups WHERE address IS NULL")]
            for number in old:
                self._db.execute("UPDATE groups SET address = ?, join_by_number = 1 WHERE number = ?",
                                 (new_address(), number))  # fmt: skip
            self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS groups_address ON groups (address)")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.rollback()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise WebStoreError(f"web group store: {exc}") from exc

    # ----------------------------------------------------------------- groups

    def create_group(self, name: str, now: datetime | None = None) -> StoredGroup:
        """A new group with a fresh 6-digit number, address and invite token; joining by number is off."""
        created = now or datetime.now(timezone.utc)
        with self._lock:
            for _ in range(50):
                number = str(100000 + secrets.randbelow(900000))
                invite = secrets.token_urlsafe(16)  # 128 bits
                address = new_address()
                try:
                    self._run(
                        "INSERT INTO groups (number, name, invite, created_at, address, join_by_number)"
                        " VALUES (?, ?, ?, ?, ?, 0)", (number, name, invite, created.isoformat(), address),
                    )  # fmt: skip
                except sqlite3.IntegrityError:
                    continue  # number, address or invite already taken: draw again
                return StoredGroup(number, name, invite, created, address, False)
        raise WebStoreError("could not find a free group number")

    def known_group(self, column: str, value: str) -> StoredGroup | None:
        """The group whose ``column`` ("number", "address", "invite") is ``value``, if a lookup found it
        before (never blocks; None: look it up)."""
        return self._groups.get((column, value))

    def _group_where(self, column: str, value: str) -> StoredGroup | None:
        with self._lock:
            found = self._run(f"SELECT {_GROUP_COLUMNS} FROM groups WHERE {column} = ?", (value,)).fetchone()
            if found is None:
                return None
            if len(self._groups) >= GROUPS_KEPT:
                self._groups.pop(next(iter(self._groups)))
            group = self._groups[(column, value)] = _group(found)
        return group

    def group(self, number: str) -> StoredGroup | None:
        """The group numbered ``number`` (the core's chat id), whether or not it admits people by number."""
        return self._group_where("number", number)

    def group_by_address(self, address: str) -> StoredGroup | None:
        return self._group_where("address", address)

    def group_by_invite(self, invite: str) -> StoredGroup | None:
        return self._group_where("invite", invite)

    def set_join_by_number(self, number: str, allowed: bool) -> None:
        with self._lock:
            self._run("UPDATE groups SET join_by_number = ? WHERE number = ?", (int(allowed), number))
            self._groups.clear()  # rare: every kept copy of the group is dropped

    def new_links(self, number: str) -> StoredGroup:
        """Give the group a new address and a new invite (128 random bits each): from now on its old page
        address and invite link find nothing. Its number, and so its key, history and memory, stay."""
        with self._lock:
            for _ in range(50):
                try:
                    changed = self._run(
                        "UPDATE groups SET address = ?, invite = ? WHERE number = ?",
                        (new_address(), secrets.token_urlsafe(16), number),
                    ).rowcount
                except sqlite3.IntegrityError:
                    continue  # drawn before by another group (never in practice): draw again
                if not changed:
                    raise WebStoreError(f"no web group numbered {number}")
                self._groups.clear()  # every kept copy of the group, old address and invite included
                row = self._run(f"SELECT {_GROUP_COLUMNS} FROM groups WHERE number = ?", (number,)).fetchone()
                return _group(row)
        raise WebStoreError("could not draw a free group address")

    # ----------------------------------------------------------------- messages

    def add_message(
        self,
        group: str,
        author_id: str,
        author_name: str,
        text: str,
        *,
        is_bot: bool = False,
        reply_to: int | None = None,
        delivered: bool = True,
        nonce: str | None = None,
        idem_key: str | None = None,
        now: datetime | None = None,
        files: Sequence[NewFile] = (),
        poll: StoredPoll | None = None,
    ) -> tuple[StoredMessage, bool]:
        """Store a message with its ``files`` and ``poll`` (``poll.message_id`` is ignored) in one
        transaction; returns ``(message, created)``. When ``nonce`` (per group) or ``idem_key`` (global) was
        already used, nothing is written and the earlier message comes back with ``created=False``."""
        sent_at = (now or datetime.now(timezone.utc)).isoformat()

        def write() -> tuple[StoredMessage, bool]:
            earlier = self._existing(group, nonce, idem_key)
            if earlier is not None:
                return earlier, False
            cur = self._run(
                "INSERT INTO messages (grp, author_id, author_name, is_bot, text, sent_at, reply_to,"
                " delivered, nonce, idem_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (group, author_id, author_name, int(is_bot), text, sent_at, reply_to, int(delivered), nonce,
                 idem_key),
            )
            message_id = cur.lastrowid
            for pos, f in enumerate(files):
                self._run(
                    f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (f.id, message_id, group, pos, f.kind, f.name, f.mime, f.size),
                )
            if poll is not None:
                self._run(
                    "INSERT INTO polls (message_id, question, options, multiple, closes_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (message_id, poll.question, json.dumps(list(poll.options)), int(poll.multiple),
                     poll.closes_at.isoformat() if poll.closes_at else None),
                )
            row = self._run(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
            return _message(row), True

        return self._shared_commit(write)

    def _shared_commit(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a transaction shared with the writes other threads queue meanwhile; returns its
        result once committed (FULL sync), or raises its own error (its savepoint alone is rolled back) or
        the commit's (nothing of the batch is stored). Whoever takes the lock first commits everything
        queued by then (group commit): while it syncs, the next writes queue up for the one after it."""
        mine = _Write(work)
        with self._queue_lock:
            self._queued.append(mine)
        with self._lock:
            if not mine.finished:
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._commit_batch(batch)
        return mine.outcome()

    def _commit_batch(self, batch: list[_Write]) -> None:
        try:
            self._run("BEGIN IMMEDIATE")
            try:
                for w in batch:
                    self._run("SAVEPOINT w")
                    try:
                        w.result = w.work()
                    except Exception as exc:
                        self._run("ROLLBACK TO w")
                        w.error = exc
                    self._run("RELEASE w")
                self._run("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.rollback()
                raise
        except BaseException as exc:  # the commit failed: nothing of the batch is stored
            for w in batch:
                w.error, w.result = (exc if isinstance(exc, Exception) else WebStoreError(repr(exc))), None
            if not isinstance(exc, Exception):
                raise
        finally:
            for w in batch:
                w.finished = True

    def _existing(self, group: str, nonce: str | None, idem_key: str | None) -> StoredMessage | None:
        if nonce is not None:
            row = self._run(
                f"SELECT {_COLUMNS} FROM messages WHERE grp = ? AND nonce = ?", (group, nonce)
            ).fetchone()
            if row:
                return _message(row)
        if idem_key is not None:
            row = self._run(f"SELECT {_COLUMNS} FROM messages WHERE idem_key = ?", (idem_key,)).fetchone()
            if row:
                return _message(row)
        return None

    def message(self, message_id: int) -> StoredMessage | None:
        with self._lock:
            row = self._run(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row) if row else None

    def mark_delivered(self, message_id: int) -> None:
        sql = "UPDATE messages SET delivered = 1 WHERE id = ?"
        self._shared_commit(lambda: self._run(sql, (message_id,)))

    def discard(self, message_id: int) -> list[StoredFile]:
        """Remove a pending message the core's inbox refused (never a delivered one) with its file rows;
        returns the removed files, whose bytes the caller deletes."""
        with self._lock:
            self._run("BEGIN IMMEDIATE")
            try:
                cur = self._run("DELETE FROM messages WHERE id = ? AND delivered = 0", (message_id,))
                files: list[StoredFile] = []
                if cur.rowcount:
                    files = [_file(r) for r in self._run(
                        f"SELECT {_FILE_COLUMNS} FROM files WHERE message_id = ? ORDER BY pos", (message_id,)
                    ).fetchall()]  # fmt: skip
                    self._run("DELETE FROM files WHERE message_id = ?", (message_id,))
                self._run("COMMIT")
            except BaseException:
                self._db.rollback()
                raise
        return files

    # ----------------------------------------------------------------- files and polls

    def bytes_used(self, group: str | None = None) -> int:
        """Bytes of message text and files kept for ``group`` (all groups when None), for the quotas."""
        where, args = ("WHERE grp = ?", (group,)) if group is not None else ("", ())
        with self._lock:
            text = self._run(f"SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB))), 0) FROM messages {where}", args)
            (text_bytes,) = text.fetchone()
            files = self._run(f"SELECT COALESCE(SUM(size), 0) FROM files {where}", args)
            (file_bytes,) = files.fetchone()
        return int(text_bytes) + int(file_bytes)

    def files_of(self, message_ids: Sequence[int]) -> dict[int, list[StoredFile]]:
        """The files of each of ``message_ids`` (in posting order); messages without files are absent."""
        out: dict[int, list[StoredFile]] = {}
        ids = list(dict.fromkeys(message_ids))
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start: start + 500]
                rows = self._run(
                    f"SELECT {_FILE_COLUMNS} FROM files WHERE message_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY message_id, pos", tuple(chunk),
                ).fetchall()  # fmt: skip
                for row in rows:
                    out.setdefault(row[1], []).append(_file(row))
        return out

    def file(self, file_id: str, *, pending_too: bool = False) -> StoredFile | None:
        """A file of a visible (delivered) message, or None. ``pending_too`` also finds files of messages
        the inbox has committed but this store has not yet marked delivered (the core may fetch them)."""
        visible = "" if pending_too else " AND m.delivered = 1"
        with self._lock:
            row = self._run(
                f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLUMNS.split(','))} FROM files f"
                f" JOIN messages m ON m.id = f.message_id WHERE f.id = ?{visible}", (file_id,)
            ).fetchone()  # fmt: skip
        return _file(row) if row else None

    def file_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._run("SELECT id FROM files").fetchall()}

    def polls_of(self, message_ids: Sequence[int]) -> dict[int, StoredPoll]:
        ids = list(dict.fromkeys(message_ids))
        out: dict[int, StoredPoll] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start: start + 500]
                rows = self._run(
                    "SELECT message_id, question, options, multiple, closes_at FROM polls"
                    f" WHERE message_id IN ({','.join('?' * len(chunk))})", tuple(chunk),
                ).fetchall()  # fmt: skip
                out.update((r[0], _poll(r)) for r in rows)
        return out

    def pending(self) -> list[StoredMessage]:
        """Messages stored but not yet confirmed by the inbox (left over from a crash), oldest first."""
        with self._lock:
            rows = self._run(f"SELECT {_COLUMNS} FROM messages WHERE delivered = 0 ORDER BY id").fetchall()
        return [_message(r) for r in rows]

    def list_messages(self, group: str, after: int | None, limit: int) -> tuple[list[StoredMessage], bool]:
        """Visible messages of ``group``, oldest first: with ``after`` the first ``limit`` newer than it,
        without it the latest ``limit``. The flag says whether more newer messages exist."""
        with self._lock:
            if after is None:
                rows = self._run(
                    f"SELECT {_COLUMNS} FROM messages WHERE grp = ? AND delivered = 1 ORDER BY id DESC LIMIT ?",
                    (group, limit),
                ).fetchall()
                return [_message(r) for r in reversed(rows)], False
            rows = self._run(
                f"SELECT {_COLUMNS} FROM messages WHERE grp = ? AND delivered = 1 AND id > ? ORDER BY id LIMIT ?",
                (group, after, limit + 1),
            ).fetchall()
        return [_message(r) for r in rows[:limit]], len(rows) > limit

    def edit_message(self, message_id: int, text: str) -> StoredMessage | None:
        """Replace a bot message's text; None if no such bot message. The bot updates its messages in place
        while they are live (an answer streaming in, a poll's tally): that is not an edit a reader should be
        told about, so ``edited`` stays as it was (it marks corrections of a finished message)."""
        with self._lock:
            cur = self._run(
                "UPDATE messages SET text = ? WHERE id = ? AND is_bot = 1 AND removed = 0", (text, message_id)
            )
            if cur.rowcount == 0:
                return None
            row = self._run(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(row)

    # ----------------------------------------------------------------- forgetting

    def authored(self, groups: Sequence[str], author_id: str) -> list[tuple[str, list[str]]]:
        """``(text, file names)`` of a person's messages in ``groups`` that are not removed yet."""
        if not groups:
            return []
        marks = ",".join("?" * len(groups))
        with self._lock:
            rows = self._run(
                f"SELECT id, text FROM messages WHERE grp IN ({marks}) AND author_id = ? AND is_bot = 0"
                " AND removed = 0", (*groups, author_id),
            ).fetchall()  # fmt: skip
        files = self.files_of([r[0] for r in rows])
        return [(text, [f.name for f in files.get(mid, [])]) for mid, text in rows]

    def redact(
        self, groups: Sequence[str], *, author_id: str | None, message_ids: Sequence[int],
        quoted: Callable[[str], bool],
    ) -> tuple[list[int], list[StoredFile]]:
        """Empty (``removed``) the person's messages in ``groups``, the given messages, and the bot's messages
        that reply to one of them or contain a quoted passage (all parts of a split bot message). Returns the
        ids emptied now and the files removed with them."""
        if not groups:
            return [], []
        marks = ",".join("?" * len(groups))
        with self._lock:
            self._run("BEGIN IMMEDIATE")
            try:
                live = self._run(
                    f"SELECT id, author_id, is_bot, text, reply_to, idem_key FROM messages WHERE grp IN ({marks})"
                    " AND removed = 0", tuple(groups),
                ).fetchall()  # fmt: skip
                wanted = set(message_ids)
                doomed = {r[0] for r in live if r[0] in wanted or (author_id is not None and not r[2] and r[1] == author_id)}
                bot = [r for r in live if r[2]]
                hit = {r[5].split("#", 1)[0] for r in bot if r[5] and (r[4] in doomed or quoted(r[3]))}
                doomed |= {r[0] for r in bot if r[4] in doomed or quoted(r[3]) or (r[5] and r[5].split("#", 1)[0] in hit)}
                files = self._drop_files(sorted(doomed))
                for mid in doomed:
                    self._run(
                        "UPDATE messages SET text = '', author_name = '', removed = 1 WHERE id = ?", (mid,)
                    )
                self._run("COMMIT")
            except BaseException:
                self._db.rollback()
                raise
            if doomed:
                self._run("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # read out (bot.state.checkpoint)
        return sorted(doomed), files

    def expire(self, groups: Sequence[str], before: datetime) -> tuple[int, list[StoredFile]]:
        """Retention: delete the messages of ``groups`` sent before ``before`` (rows, files, polls)."""
        if not groups:
            return 0, []
        marks = ",".join("?" * len(groups))
        with self._lock:
            self._run("BEGIN IMMEDIATE")
            try:
                rows = self._run(f"SELECT id, sent_at FROM messages WHERE grp IN ({marks})", tuple(groups)).fetchall()
                old = [mid for mid, at in rows if datetime.fromisoformat(at) < before]
                files = self._drop_files(old)
                for start in range(0, len(old), 500):
                    chunk = old[start: start + 500]
                    self._run(f"DELETE FROM messages WHERE id IN ({','.join('?' * len(chunk))})", tuple(chunk))
                self._run("COMMIT")
            except BaseException:
                self._db.rollback()
                raise
            if old:
                self._run("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # read out (bot.state.checkpoint)
        return len(old), files

    def _drop_files(self, message_ids: Sequence[int]) -> list[StoredFile]:
        """Delete the file and poll rows of these messages (inside the caller's transaction)."""
        files: list[StoredFile] = []
        for start in range(0, len(message_ids), 500):
            chunk = tuple(message_ids[start: start + 500])
            marks = ",".join("?" * len(chunk))
            files += [_file(r) for r in self._run(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE message_id IN ({marks})", chunk).fetchall()]  # fmt: skip
            self._run(f"DELETE FROM files WHERE message_id IN ({marks})", chunk)
            self._run(f"DELETE FROM polls WHERE message_id IN ({marks})", chunk)
        return files
