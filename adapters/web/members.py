"""The web group's members and group admins (tables of ``web.db``, a part of ``adapters.web.store.WebStore``).

A person becomes a member when they first pick a nickname: a public ``author_id`` (shown with their
messages) and a secret key (``secrets.token_urlsafe(32)``) that proves it on every post. Only the key's
SHA-256 is stored, so the file alone lets nobody post as anyone. A group's creator is its first admin;
admins can name others (``add_admin``).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True)
class StoredMember:
    """A person of the web groups: ``author_id`` is public (shown with messages), the key proving it is not."""

    author_id: str
    nickname: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class MemberTables:
    """Members and admins, on the store's connection (``_lock`` and ``_run`` come from ``WebStore``)."""

    _lock: threading.Lock

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
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

    def member_by_key(self, key: str) -> StoredMember | None:
        with self._lock:
            row = self._run(
                "SELECT author_id, nickname FROM members WHERE key_hash = ?", (key_hash(key),)
            ).fetchone()
        return StoredMember(*row) if row else None

    def rename_member(self, author_id: str, nickname: str) -> None:
        with self._lock:
            self._run("UPDATE members SET nickname = ? WHERE author_id = ?", (nickname, author_id))

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
