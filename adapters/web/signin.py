"""Signing in to the web group as a member of another platform (``bot.ports.HostedRooms``).

The core asks for a one-time link for a member (a web user id and a name it chose, linked to the member's
account elsewhere) and sends it to them privately. Opening ``/signin/<token>`` once, before it expires,
gives the browser a member key (an HttpOnly cookie; ``Authorization: Member <key>`` for scripts) and shows
the pai's room. From then on that user id posts only with one of its keys: nobody else can speak as the
member the core links to another account.

Kept in ``web.db`` beside the groups: ``signin_tokens`` (a token's SHA-256, never the token, with the user
id, name, room and expiry; deleted when used) and ``member_keys`` (a key's SHA-256 with its user id and
name). Blocking methods, run off the event loop by the adapter.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

TABLES = """
CREATE TABLE IF NOT EXISTS signin_tokens (
    token_hash TEXT PRIMARY KEY,
    author_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    grp TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS member_keys (
    key_hash TEXT PRIMARY KEY,
    author_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS member_keys_author ON member_keys(author_id);
"""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    author_id: str
    nickname: str
    group: str
    key: str  # the new member key (only ever returned here, once)


@dataclass(frozen=True, slots=True)
class KeyedMember:
    author_id: str
    nickname: str


class SignIns:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(TABLES)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def issue(self, author_id: str, nickname: str, group: str, ttl_s: float) -> str:
        """A one-time sign-in token for ``author_id`` into ``group``."""
        token = secrets.token_urlsafe(24)
        now = datetime.now(timezone.utc)
        with self._lock:
            self._db.execute("DELETE FROM signin_tokens WHERE expires_at < ?", (now.isoformat(),))
            self._db.execute(
                "INSERT INTO signin_tokens(token_hash, author_id, nickname, grp, expires_at) VALUES (?,?,?,?,?)",
                (digest(token), author_id, nickname, group, (now + timedelta(seconds=ttl_s)).isoformat()))
        return token

    def redeem(self, token: str) -> SignedIn | None:
        """Use a token (once): a new member key for its user id, or None when it is unknown, used or expired."""
        now = datetime.now(timezone.utc).isoformat()
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT author_id, nickname, grp FROM signin_tokens WHERE token_hash=? AND expires_at >= ?",
                    (digest(token), now)).fetchone()
                self._db.execute("DELETE FROM signin_tokens WHERE token_hash=?", (digest(token),))
                if row is not None:
                    self._db.execute(
                        "INSERT INTO member_keys(key_hash, author_id, nickname, created_at) VALUES (?,?,?,?)",
                        (digest(key), row[0], row[1], now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return SignedIn(row[0], row[1], row[2], key) if row is not None else None

    def member(self, key: str) -> KeyedMember | None:
        with self._lock:
            row = self._db.execute("SELECT author_id, nickname FROM member_keys WHERE key_hash=?",
                                   (digest(key),)).fetchone()
        return KeyedMember(*row) if row else None

    def keyed(self, author_id: str) -> bool:
        """Whether ``author_id`` posts only with a member key."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM member_keys WHERE author_id=?", (author_id,)).fetchone() is not None
