"""The web group's members and group admins (tables of ``web.db``, a part of ``adapters.web.store.WebStore``).

A person becomes a member when they first pick a nickname: a public ``author_id`` (shown with their
messages) and a secret key (``secrets.token_urlsafe(32)``) that proves it on every post. Only the key's
SHA-256 is stored, so the file alone lets nobody post as anyone. A member signed in by one-time links
(``adapters.web.signin``) on several browsers has a key for each: the first in ``members``, the others in
``member_keys``, at most ``KEYS_PER_MEMBER`` in all (a new one retires the oldest of the others), and
``sign_out_others`` keeps only the key it is asked with. A group's creator is its first admin; admins can
name others (``add_admin``).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True)
class StoredMember:
    """A person of the web groups: ``author_id`` is public (shown with messages), the key proving it is not."""

    author_id: str
    nickname: str


MEMBERS_KEPT = 10_000  # members kept in memory by key (the oldest entry goes first)
KEYS_PER_MEMBER = 5  # browsers a member can be signed in on at once (the first key included)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class MemberTables:
    """Members and admins, on the store's connection (``_lock``, ``_run`` and ``_shared_commit`` come from
    ``WebStore``).

    Every post proves its member key: the members found by key are kept in memory (``known_member``, no
    query), and a rename or a new key for the same member (``redeem_sign_in``) drops the entry."""

    _lock: threading.Lock
    _members: dict[str, StoredMember]  # key hash -> member, filled by member_by_key

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        raise NotImplementedError

    def _shared_commit(self, work: Callable[[], int]) -> int:
        raise NotImplementedError

    def add_member(self, nickname: str, now: datetime | None = None) -> tuple[StoredMember, str]:
        """A new member with a fresh public id and secret key; returns ``(member, key)``."""
        created = (now or datetime.now(timezone.utc)).isoformat()
        key = secrets.token_urlsafe(32)
        member = StoredMember(f"m-{secrets.token_urlsafe(12)}", nickname)
        with self._lock:
            self._run(
                "INSERT INTO members (author_id, nickname, key_hash, created_at) VALUES (?, ?, ?, ?)",
                (member.author_id, nickname, key_hash(key), created),
            )
        return member, key

    def known_member(self, key: str) -> StoredMember | None:
        """The member of ``key`` if ``member_by_key`` found it before (never blocks; None: ask that)."""
        return self._members.get(key_hash(key))

    def member_by_key(self, key: str) -> StoredMember | None:
        digest = key_hash(key)
        with self._lock:
            row = self._run(
                "SELECT author_id, nickname FROM members WHERE key_hash = ? UNION ALL SELECT m.author_id,"
                " m.nickname FROM member_keys k JOIN members m USING (author_id) WHERE k.key_hash = ?",
                (digest, digest),
            ).fetchone()
            if row is None:
                return None
            member = StoredMember(*row)
            if len(self._members) >= MEMBERS_KEPT:
                self._members.pop(next(iter(self._members)))
            self._members[digest] = member
        return member

    def add_key(self, author_id: str, key: str, now: str) -> None:
        """One more key for an existing member (under ``_lock``, in the caller's transaction); past
        ``KEYS_PER_MEMBER`` the oldest extra key stops working."""
        self._run("INSERT INTO member_keys (key_hash, author_id, created_at) VALUES (?, ?, ?)",
                  (key_hash(key), author_id, now))  # fmt: skip
        self._run(
            "DELETE FROM member_keys WHERE author_id = ? AND key_hash NOT IN (SELECT key_hash FROM"
            " member_keys WHERE author_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)",
            (author_id, author_id, KEYS_PER_MEMBER - 1),
        )
        self._forget_member(author_id)

    def sign_out_others(self, author_id: str, key: str) -> int:
        """Make ``key`` the member's only key (every other browser signed in as her must sign in again);
        returns how many keys stopped working. ``LookupError`` when ``key`` is not hers (nothing changes)."""
        digest = key_hash(key)

        def write() -> int:
            main = self._run("SELECT key_hash FROM members WHERE author_id = ?", (author_id,)).fetchone()
            rows = self._run("SELECT key_hash FROM member_keys WHERE author_id = ?", (author_id,))
            extra = {r[0] for r in rows}
            if main is None or (main[0] != digest and digest not in extra):
                raise LookupError(f"not a key of member {author_id}")
            self._run("DELETE FROM member_keys WHERE author_id = ?", (author_id,))
            if main[0] != digest:  # this key becomes the first one, and the first one stops working
                self._run("UPDATE members SET key_hash = ? WHERE author_id = ?", (digest, author_id))
            self._forget_member(author_id)
            return len(extra)  # every other key: the extra ones, or the first one in place of this one

        return self._shared_commit(write)

    def _forget_member(self, author_id: str) -> None:
        """Drop the kept entries of ``author_id`` (under ``_lock``, in the transaction that changes her)."""
        for digest in [d for d, m in self._members.items() if m.author_id == author_id]:
            del self._members[digest]

    def rename_member(self, author_id: str, nickname: str) -> None:
        with self._lock:
            self._run("UPDATE members SET nickname = ? WHERE author_id = ?", (nickname, author_id))
            self._forget_member(author_id)

    def add_admin(self, group: str, author_id: str) -> bool:
        """Make a member an admin of a group; False if they were one already."""
        with self._lock:
            cur = self._run("INSERT OR IGNORE INTO group_admins (grp, author_id) VALUES (?, ?)", (group, author_id))
        return cur.rowcount == 1

    def is_admin(self, group: str, author_id: str) -> bool:
        with self._lock:
            row = self._run("SELECT 1 FROM group_admins WHERE grp = ? AND author_id = ?", (group, author_id))
            return row.fetchone() is not None

    def posters_named(self, group: str, nickname: str) -> list[str]:
        """The ids of the group's members (people who posted there) whose nickname is ``nickname`` (any case)."""
        with self._lock:
            rows = self._run(
                "SELECT DISTINCT m.author_id FROM members m JOIN messages g ON g.author_id = m.author_id"
                " WHERE g.grp = ? AND g.is_bot = 0 AND lower(m.nickname) = lower(?)", (group, nickname),
            ).fetchall()  # fmt: skip
        return [r[0] for r in rows]
