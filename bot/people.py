"""People who link their accounts on several platforms themselves (``/link``, ``bot.skills.identity``).

``/link`` gives a member a one-time code (in a direct message: whoever holds the code can link an account
to hers); ``/link <code>`` from her account on another platform links the two. Linked accounts are one
person for ``/forget-me`` and ``/what-do-you-know-about-me``, for rate limits, and in the prompt ("Alice
(TG) and Alice (MX) are the same person"). What each group may see does not change: a group's memory holds
what was said in it (or its pai) and nothing more. ``/unlink`` takes an account out again.

Kept in the state database: ``person_links`` (account -> person, the display name last seen) and
``link_codes`` (a code's SHA-256, never the code, with its account and expiry; used once). Lookups are
synchronous, from a view loaded at start and reloaded after each change.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bot.events import PersonRef
from bot.ports import Erasure
from bot.state import StateDB

TABLES = """
CREATE TABLE IF NOT EXISTS person_links (
    identity TEXT PRIMARY KEY,                -- "<platform>:<user id>"
    person TEXT NOT NULL,                     -- one of the person's identities, naming the whole person
    name TEXT NOT NULL DEFAULT '',            -- the display name as last seen (for the prompt's note)
    linked_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS person_links_person ON person_links(person);
CREATE TABLE IF NOT EXISTS link_codes (
    code_hash TEXT PRIMARY KEY,               -- SHA-256 of the one-time code
    identity TEXT NOT NULL UNIQUE,            -- who asked for it (one live code each)
    name TEXT NOT NULL DEFAULT '',
    expires_at TEXT NOT NULL
);
"""

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8  # 40 bits: with MAX_TRIES a guess has no chance before the code expires
CODE_TTL = timedelta(minutes=15)
MAX_TRIES = 5  # wrong codes an account may try ...
TRY_WINDOW = timedelta(hours=1)  # ... per hour


class LinkError(Exception):
    """Why a code did not link: ``unknown`` (wrong, used or expired), ``same account``, ``too many tries``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def code_hash(code: str) -> str:
    return hashlib.sha256("".join(code.split()).upper().encode()).hexdigest()


class People:
    def __init__(self, state: StateDB, rng: random.Random | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.state = state
        self._rng = rng or random.SystemRandom()
        self._now = now or state.now
        self._person: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._tries: dict[str, list[datetime]] = {}
        self._lock = asyncio.Lock()
        state.add_tables(TABLES)

    # ----------------------------------------------------------------- lookups (no I/O)

    def person_of(self, identity: str) -> str:
        """The person an account belongs to (the account itself when it is linked to nothing)."""
        return self._person.get(identity, identity)

    def identities(self, identity: str) -> tuple[str, ...]:
        """Every account of the person ``identity`` belongs to, ``identity`` first."""
        person = self._person.get(identity)
        if person is None:
            return (identity,)
        others = sorted(k for k, p in self._person.items() if p == person and k != identity)
        return (identity, *others)

    def name_of(self, identity: str) -> str:
        return self._names.get(identity, "")

    def linked(self) -> bool:
        return bool(self._person)

    # ----------------------------------------------------------------- loading and changes

    async def load(self) -> None:
        rows = await self.state.run(lambda c: c.execute("SELECT identity, person, name FROM person_links").fetchall())
        self._person = {i: p for i, p, _ in rows}
        self._names = {i: n for i, _, n in rows if n}

    async def issue(self, who: PersonRef) -> str:
        """A new one-time code for ``who`` (an older one stops working)."""
        code = "".join(self._rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        until = (self._now() + CODE_TTL).isoformat()

        def q(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM link_codes WHERE identity=? OR expires_at < ?", (who.key, self._now().isoformat()))
            c.execute("INSERT INTO link_codes(code_hash, identity, name, expires_at) VALUES (?,?,?,?)",
                      (code_hash(code), who.key, who.display_name, until))

        await self.state.run(q, transaction=True)
        return code

    async def redeem(self, code: str, who: PersonRef) -> tuple[str, ...]:
        """Link ``who`` with the account that asked for ``code``; returns the person's accounts."""
        now = self._now()
        tries = [t for t in self._tries.get(who.key, []) if now - t < TRY_WINDOW]
        if len(tries) >= MAX_TRIES:
            raise LinkError("too many tries")
        async with self._lock:
            def q(c: sqlite3.Connection) -> str:
                row = c.execute("SELECT identity, name FROM link_codes WHERE code_hash=? AND expires_at >= ?",
                                (code_hash(code), now.isoformat())).fetchone()
                if row is None:
                    return ""
                other, other_name = row
                if other == who.key:
                    raise LinkError("same account")
                c.execute("DELETE FROM link_codes WHERE code_hash=?", (code_hash(code),))
                self._join(c, other, other_name, who.key, who.display_name, now)
                return str(other)

            other = await self.state.run(q, transaction=True)
            if not other:
                self._tries[who.key] = [*tries, now]
                raise LinkError("unknown")
            await self.load()
            return self.identities(who.key)

    def _join(self, c: sqlite3.Connection, a: str, a_name: str, b: str, b_name: str, now: datetime) -> None:
        """Make ``a`` and ``b`` (and everyone already linked to either) one person."""
        def person(identity: str) -> str:
            row = c.execute("SELECT person FROM person_links WHERE identity=?", (identity,)).fetchone()
            return str(row[0]) if row else identity

        pa, pb = person(a), person(b)
        at = now.isoformat()
        for identity, name, p in ((a, a_name, pa), (b, b_name, pa)):
            c.execute("INSERT INTO person_links(identity, person, name, linked_at) VALUES (?,?,?,?) "
                      "ON CONFLICT(identity) DO UPDATE SET person=excluded.person, name=excluded.name", (identity, p, name, at))
        if pb != pa:
            c.execute("UPDATE person_links SET person=? WHERE person=?", (pa, pb))

    async def attach(self, who: PersonRef, other: PersonRef) -> None:
        """Link an account the bot made for ``who`` itself (their web group identity, signed in by a link
        sent to ``who`` privately): no code needed, the bot knows both are the same person."""
        async with self._lock:
            now = self._now()
            await self.state.run(lambda c: self._join(c, who.key, who.display_name, other.key,
                                                      other.display_name, now), transaction=True)
            await self.load()

    async def unlink(self, identity: str) -> bool:
        """Take an account out of its person; False when it was linked to nothing."""
        async with self._lock:
            def q(c: sqlite3.Connection) -> bool:
                row = c.execute("SELECT person FROM person_links WHERE identity=?", (identity,)).fetchone()
                if row is None:
                    return False
                person = row[0]
                c.execute("DELETE FROM person_links WHERE identity=?", (identity,))
                rest = [r[0] for r in c.execute("SELECT identity FROM person_links WHERE person=? ORDER BY identity",
                                                (person,))]
                if len(rest) <= 1:  # one account alone is nobody's link
                    c.execute("DELETE FROM person_links WHERE person=?", (person,))
                elif person == identity:
                    c.execute("UPDATE person_links SET person=? WHERE person=?", (rest[0], person))
                return True

            done = await self.state.run(q, transaction=True)
            await self.load()
            return done

    async def note_name(self, who: PersonRef) -> None:
        """Keep a linked account's display name current (for the prompt's note); cheap when unchanged."""
        if who.key in self._person and self._names.get(who.key) != who.display_name and who.display_name:
            self._names[who.key] = who.display_name
            await self.state.run(lambda c: c.execute("UPDATE person_links SET name=? WHERE identity=?",
                                                     (who.display_name, who.key)))

    async def forget(self, identity: str) -> None:
        """Remove what is kept of an account's codes (``/forget-me`` keeps links: they are the member's own
        choice and ``/unlink`` undoes them)."""
        await self.state.run(lambda c: c.execute("DELETE FROM link_codes WHERE identity=?", (identity,)))

    # ----------------------------------------------------------------- a ContentEraser (bot.ports)

    async def passages(self, erasure: Erasure) -> Sequence[str]:
        return []  # names and codes, no words of hers

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """``/forget-me`` and ``paibot memory forget`` of an account (``author_id`` on the platform of
        ``chat_keys``): its pending link codes go. Its links stay: they are the member's own choice, and how
        the next ``/forget-me`` finds all her accounts (``/unlink`` removes them)."""
        if erasure.author_id is None or not erasure.chat_keys:
            return {}
        await self.forget(f"{erasure.chat_keys[0].split(':', 1)[0]}:{erasure.author_id}")
        return {}
