"""Signing in to the web group as a member of another platform (``bot.ports.HostedRooms``).

The core asks for a one-time link for a member (a web user id and a name it chose, linked to the member's
account elsewhere) and sends it to them privately. Opening ``/signin/<token>`` once, before it expires,
makes that web id a web member (``adapters.web.members``: a row of ``members``, like a member who picked a
nickname on the page) and gives the browser its member key (the HttpOnly cookie; ``Authorization: Member
<key>`` for scripts). From then on that id posts, like every web member, only with its key: nobody else can
speak as the member the core links to another account. Opening a new link for a web id that is a member
already gives that browser a key of its own (the key is the only proof, and only its SHA-256 is kept): the
browsers signed in before stay signed in, up to ``adapters.web.members.KEYS_PER_MEMBER`` of them (a new
one retires the oldest but the first), until the member signs the others out (``DELETE
/api/members/me/keys``).

Kept in ``web.db`` beside the members, on the store's connection (a part of ``adapters.web.store.WebStore``):
``signin_tokens`` (a token's SHA-256, never the token, with the web id, name, room and expiry; deleted when
used or expired). Blocking methods, run off the event loop by the adapter.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from adapters.web.members import key_hash

SIGNIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS signin_tokens (
    token_hash TEXT PRIMARY KEY,
    author_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    grp TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    author_id: str
    nickname: str
    group: str
    key: str  # the member's new key (only ever returned here, once)


class SignInTables:
    """One-time sign-in tokens, on the store's connection (``_lock`` and ``_run`` come from ``WebStore``)."""

    _lock: threading.Lock

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        raise NotImplementedError

    def _forget_member(self, author_id: str) -> None:
        raise NotImplementedError

    def add_key(self, author_id: str, key: str, now: str) -> None:
        raise NotImplementedError

    def issue_sign_in(self, author_id: str, nickname: str, group: str, ttl_s: float) -> str:
        """A one-time sign-in token for ``author_id`` into ``group``."""
        token = secrets.token_urlsafe(24)
        now = datetime.now(timezone.utc)
        with self._lock:
            self._run("DELETE FROM signin_tokens WHERE expires_at < ?", (now.isoformat(),))
            self._run(
                "INSERT INTO signin_tokens(token_hash, author_id, nickname, grp, expires_at) VALUES (?,?,?,?,?)",
                (digest(token), author_id, nickname, group, (now + timedelta(seconds=ttl_s)).isoformat()))
        return token

    def _admit(self, author_id: str, nickname: str, key: str, now: str) -> str:
        """Make ``author_id`` a member proven by ``key`` (in the caller's transaction); returns her nickname.
        Signed in elsewhere already, she keeps that nickname and the other browsers keep their keys."""
        known = self._run("SELECT nickname FROM members WHERE author_id = ?", (author_id,)).fetchone()
        if known is not None:
            self.add_key(author_id, key, now)
            return str(known[0])
        self._run("INSERT INTO members (author_id, nickname, key_hash, created_at) VALUES (?, ?, ?, ?)",
                  (author_id, nickname, key_hash(key), now))  # fmt: skip
        return nickname

    def redeem_sign_in(self, token: str) -> SignedIn | None:
        """Use a token (once): its web id becomes a member (or keeps its nickname and gets a new key), or
        None when the token is unknown, used or expired."""
        now = datetime.now(timezone.utc).isoformat()
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._run("BEGIN IMMEDIATE")
            try:
                row = self._run(
                    "SELECT author_id, nickname, grp FROM signin_tokens WHERE token_hash=? AND expires_at >= ?",
                    (digest(token), now)).fetchone()
                self._run("DELETE FROM signin_tokens WHERE token_hash=?", (digest(token),))
                nickname = self._admit(row[0], row[1], key, now) if row is not None else ""
                self._run("COMMIT")
            except BaseException:
                self._run("ROLLBACK")
                raise
        return SignedIn(row[0], nickname, row[2], key) if row is not None else None
