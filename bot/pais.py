"""Pais: groups on several platforms that hold one conversation (一个派).

A pai is a set of group keys that share one memory. There are two kinds:

* from config.yaml (``pais.<name>``): memory scope ``pai:<name>``; its groups' messages are passed on to the
  others (``bot.relay``) when the entry says ``relay: true``;
* made from chat (``/pai create <name>``, ``bot.skills.pai``): a 派号 (a six-digit number) and an invite
  code; an admin of another group asks to join with the code, the pai's owner accepts; memory scope
  ``pai:#<number>``; always relayed. Kept in the state database (tables below).

A group is in at most one pai. Joining starts a shared memory: what a group said before it joined stays in
its own memory (scope = its group key), which it gets back when it leaves; the others never see it.

``PaiDirectory`` answers the pipeline's questions (``pai_of``, ``relay_targets``, ``label``) synchronously
from a view it loads at start and reloads after every change (one process owns the data directory).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.events import ChatRef, PersonRef
from bot.i18n import Translator
from bot.state import StateDB

TABLES = """
CREATE TABLE IF NOT EXISTS pais (
    number TEXT PRIMARY KEY,                  -- the 派号
    name TEXT NOT NULL,
    owner TEXT NOT NULL,                      -- "<platform>:<user id>" of the member who made it
    owner_chat TEXT NOT NULL,                 -- the group it was made in (leaving it ends the pai)
    invite TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pai_chats (
    chat_key TEXT PRIMARY KEY,
    number TEXT NOT NULL,
    joined_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pai_requests (     -- a group asking to join, until the owner answers (or 7 days)
    no INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL,
    chat_key TEXT NOT NULL,
    chat_title TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,               -- "<platform>:<user id>" of the admin who asked
    at TEXT NOT NULL,
    UNIQUE (number, chat_key)
);
"""

INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed on phones
INVITE_LENGTH = 8
REQUEST_DAYS = 7
TITLE_KEY = "chat:title"  # group_kv: the group's title as last seen, for labels


class PaiError(Exception):
    """A pai change that cannot be made; ``reason`` is one of the keys of ``bot.skills.pai.REASONS``."""

    def __init__(self, reason: str, pai: Pai | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pai = pai


@dataclass(frozen=True, slots=True)
class Pai:
    scope: str  # the memory scope of its groups
    name: str
    chats: tuple[str, ...]  # group keys, in the order they joined
    relay: bool
    number: str = ""  # 派号 (made from chat only)
    owner: str = ""
    owner_chat: str = ""
    invite: str = ""

    @property
    def from_config(self) -> bool:
        return not self.number


@dataclass(frozen=True, slots=True)
class JoinRequest:
    no: int
    number: str
    chat_key: str
    chat_title: str
    requested_by: str


class PaiDirectory:
    """Which pai each group is in, and the changes ``/pai`` makes. ``labels`` are the platforms' short names
    (``TG``, ``MX``...) from the adapter plugins."""

    def __init__(
        self, settings: Settings, state: StateDB, labels: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.labels = dict(labels or {})
        self._rng = rng or random.SystemRandom()
        self._config = {
            name: Pai(f"pai:{name}", name, keys, name in settings.relayed_pais)
            for name, keys in settings.pais.items()
        }
        self._made: dict[str, Pai] = {}
        self._by_chat: dict[str, Pai] = {}
        self._titles: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._index()
        state.add_tables(TABLES)

    # ----------------------------------------------------------------- lookups (no I/O)

    def pai_for(self, chat_key: str) -> Pai | None:
        return self._by_chat.get(chat_key)

    def pai_of(self, chat_key: str) -> str:
        """The memory scope of a group: its pai's, else the group key itself."""
        pai = self._by_chat.get(chat_key)
        return pai.scope if pai is not None else chat_key

    def by_scope(self, scope: str) -> Pai | None:
        return next((p for p in (*self._config.values(), *self._made.values()) if p.scope == scope), None)

    def by_number(self, number: str) -> Pai | None:
        return self._made.get(number)

    def relay_targets(self, chat_key: str) -> tuple[str, ...]:
        """The other groups a member message of ``chat_key`` is passed on to (none unless relayed)."""
        pai = self._by_chat.get(chat_key)
        if pai is None or not pai.relay:
            return ()
        return tuple(k for k in pai.chats if k != chat_key)

    def relays(self, chat_key: str) -> bool:
        return bool(self.relay_targets(chat_key))

    def platform_label(self, platform: str, t: Translator | None = None) -> str:
        """The platform's short name (``AdapterPlugin.label``), in the members' language when ``t`` is given
        (``Web`` reads 网页; a plugin marks its label with ``N_``). The prompt's labels stay as they are."""
        label = self.labels.get(platform) or platform
        return t._(label) if t is not None else label

    def title(self, chat_key: str) -> str:
        return self._titles.get(chat_key, "")

    def label(self, chat_key: str, t: Translator | None = None) -> str:
        """How lines of a group are labelled inside its pai: the platform's short name (``TG``), with the
        group's title when the pai has several groups on that platform (``TG · Family``). Translated for
        members with ``t`` (relayed copies), as it is for the model (the prompt)."""
        platform = chat_key.split(":", 1)[0]
        short = self.platform_label(platform, t)
        pai = self._by_chat.get(chat_key)
        same = [k for k in (pai.chats if pai else ()) if k.split(":", 1)[0] == platform]
        title = self._titles.get(chat_key, "")
        if len(same) > 1:
            return f"{short} · {title or chat_key.split(':', 1)[1]}"
        return short

    def spans_several(self, scope: str) -> bool:
        pai = self.by_scope(scope)
        return pai is not None and len(pai.chats) > 1

    # ----------------------------------------------------------------- loading

    def _index(self) -> None:
        by_chat: dict[str, Pai] = {}
        for pai in (*self._config.values(), *self._made.values()):
            for key in pai.chats:
                by_chat.setdefault(key, pai)  # config.yaml wins; a chat-made pai never lists a config group
        self._by_chat = by_chat

    async def load(self) -> None:
        """Read the pais made from chat (and the titles of every pai's groups)."""

        def q(c: sqlite3.Connection) -> tuple[list[tuple[str, ...]], list[tuple[str, str]], list[tuple[str, str]]]:
            pais = c.execute("SELECT number, name, owner, owner_chat, invite FROM pais").fetchall()
            chats = c.execute("SELECT chat_key, number FROM pai_chats ORDER BY joined_at, chat_key").fetchall()
            titles = c.execute("SELECT group_key, value FROM group_kv WHERE key=?", (TITLE_KEY,)).fetchall()
            return pais, chats, titles

        pais, chats, titles = await self.state.run(q)
        members: dict[str, list[str]] = {}
        for key, number in chats:
            members.setdefault(number, []).append(key)
        self._made = {
            number: Pai(f"pai:#{number}", name, tuple(members.get(number, ())), True, number, owner, owner_chat, invite)
            for number, name, owner, owner_chat, invite in pais
        }
        self._titles = dict(titles)
        self._index()

    async def note_chat(self, chat: ChatRef) -> None:
        """Remember a group's title for labels (only for groups in a pai; written when it changes)."""
        if not chat.title or chat.key not in self._by_chat or self._titles.get(chat.key) == chat.title:
            return
        self._titles[chat.key] = chat.title
        await self.state.group_set(chat.key, TITLE_KEY, chat.title)

    # ----------------------------------------------------------------- changes made from chat

    async def create(self, name: str, chat: ChatRef, owner: PersonRef) -> Pai:
        """A new pai of ``chat``, owned by ``owner``; ``PaiError("in a pai")`` when the group is in one."""
        async with self._lock:
            self._free(chat.key)
            now = self.state_now()
            for _ in range(100):
                number = str(self._rng.randrange(100_000, 1_000_000))
                invite = "".join(self._rng.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))

                def add(c: sqlite3.Connection, number: str = number, invite: str = invite) -> bool:
                    if c.execute("SELECT 1 FROM pais WHERE number=? OR invite=?", (number, invite)).fetchone():
                        return False
                    if c.execute("SELECT 1 FROM pai_chats WHERE chat_key=?", (chat.key,)).fetchone():
                        raise PaiError("in a pai")
                    c.execute("INSERT INTO pais(number, name, owner, owner_chat, invite, created_at) VALUES (?,?,?,?,?,?)",
                              (number, name, owner.key, chat.key, invite, now))
                    c.execute("INSERT INTO pai_chats(chat_key, number, joined_at) VALUES (?,?,?)", (chat.key, number, now))
                    c.execute("DELETE FROM pai_requests WHERE chat_key=?", (chat.key,))
                    return True

                if await self.state.run(add, transaction=True):
                    await self.load()
                    await self.note_chat(chat)
                    return self._made[number]
            raise PaiError("busy")  # pragma: no cover - a million numbers, a hundred tries

    async def request_join(self, invite: str, chat: ChatRef, who: PersonRef) -> tuple[Pai, JoinRequest]:
        """Ask to join the pai whose invite code is ``invite``; the owner answers (``accept``/``reject``)."""
        code = invite.strip().upper()
        async with self._lock:
            pai = next((p for p in self._made.values() if p.invite == code), None)
            if pai is None:
                raise PaiError("unknown invite")
            if chat.key in pai.chats:
                raise PaiError("already a member", pai)
            self._free(chat.key)
            now = self.state_now()

            def add(c: sqlite3.Connection) -> int:
                c.execute("DELETE FROM pai_requests WHERE at < ?", (self._expired(),))
                row = c.execute("SELECT no FROM pai_requests WHERE number=? AND chat_key=?", (pai.number, chat.key)).fetchone()
                if row:
                    return int(row[0])
                cur = c.execute(
                    "INSERT INTO pai_requests(number, chat_key, chat_title, requested_by, at) VALUES (?,?,?,?,?)",
                    (pai.number, chat.key, chat.title, who.key, now),
                )
                return int(cur.lastrowid or 0)

            no = await self.state.run(add, transaction=True)
            return pai, JoinRequest(no, pai.number, chat.key, chat.title, who.key)

    async def requests(self, number: str) -> list[JoinRequest]:
        rows = await self.state.run(lambda c: c.execute(
            "SELECT no, number, chat_key, chat_title, requested_by FROM pai_requests WHERE number=? AND at >= ? "
            "ORDER BY no", (number, self._expired())).fetchall())
        return [JoinRequest(int(no), n, k, t, by) for no, n, k, t, by in rows]

    async def request(self, no: int) -> JoinRequest | None:
        """A request still waiting for its owner's answer."""
        row = await self.state.run(lambda c: c.execute(
            "SELECT no, number, chat_key, chat_title, requested_by FROM pai_requests WHERE no=? AND at >= ?",
            (no, self._expired())).fetchone())
        return JoinRequest(int(row[0]), *row[1:]) if row else None

    async def answer(self, no: int, *, accept: bool) -> JoinRequest:
        """Accept (the group joins) or reject a request; ``PaiError("no request")`` when there is none,
        ``PaiError("in a pai")`` when the group joined another pai meanwhile."""
        async with self._lock:
            req = await self.request(no)
            if req is None:
                raise PaiError("no request")
            if accept:
                self._free(req.chat_key)

            def q(c: sqlite3.Connection) -> None:
                if not c.execute("DELETE FROM pai_requests WHERE no=?", (no,)).rowcount:
                    raise PaiError("no request")
                if accept:
                    c.execute("INSERT INTO pai_chats(chat_key, number, joined_at) VALUES (?,?,?)",
                              (req.chat_key, req.number, self.state_now()))

            await self.state.run(q, transaction=True)
            await self.load()
        if accept and req.chat_title:
            await self.note_chat(ChatRef(*req.chat_key.split(":", 1), title=req.chat_title))
        return req

    async def add_room(self, number: str, chat: ChatRef) -> Pai:
        """Add a room the bot opened for a pai made from chat (its web group): no request, the bot hosts it."""
        async with self._lock:
            self._free(chat.key)
            await self.state.run(lambda c: c.execute(
                "INSERT INTO pai_chats(chat_key, number, joined_at) VALUES (?,?,?)", (chat.key, number, self.state_now())))
            await self.load()
        await self.note_chat(chat)
        pai = self._made.get(number)
        if pai is None:
            raise PaiError("not in a pai")
        return pai

    async def leave(self, chat_key: str) -> tuple[Pai, bool]:
        """Take a group out of its pai made from chat. Returns the pai as it was and whether it ended (its
        owner's group left, so every group did)."""
        async with self._lock:
            pai = self._by_chat.get(chat_key)
            if pai is None:
                raise PaiError("not in a pai")
            if pai.from_config:
                raise PaiError("from config", pai)
            ends = chat_key == pai.owner_chat

            def q(c: sqlite3.Connection) -> None:
                if ends:
                    for table in ("pai_chats", "pai_requests", "pais"):
                        c.execute(f"DELETE FROM {table} WHERE number=?", (pai.number,))
                else:
                    c.execute("DELETE FROM pai_chats WHERE chat_key=?", (chat_key,))

            await self.state.run(q, transaction=True)
            await self.load()
            return pai, ends

    # ----------------------------------------------------------------- helpers

    def _free(self, chat_key: str) -> None:
        if not chat_key:
            return
        pai = self._by_chat.get(chat_key)
        if pai is not None:
            raise PaiError("from config" if pai.from_config else "in a pai", pai)

    def state_now(self) -> str:
        return self.state.now().isoformat()

    def _expired(self) -> str:
        return (self.state.now() - timedelta(days=REQUEST_DAYS)).isoformat()


def chat_made_scopes(state_db: Path) -> dict[str, str]:
    """Group key -> memory scope of the pais made from chat, read from a stopped bot's state database (for
    ``paibot memory``); empty when there is none."""
    if not state_db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT chat_key, number FROM pai_chats").fetchall()
    except sqlite3.OperationalError:  # a data directory from before pais were made from chat
        return {}
    return {key: f"pai:#{number}" for key, number in rows}


class WithChatPais:
    """Settings whose ``pai_of`` also knows the pais made from chat (config.yaml's win, as in the bot)."""

    def __init__(self, settings: Settings, scopes: Mapping[str, str]) -> None:
        self._settings = settings
        self._scopes = dict(scopes)

    @property
    def settings(self) -> Settings:
        """The settings it wraps (for what needs a ``Settings`` itself)."""
        return self._settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)

    def pai_of(self, group_key: str) -> str:
        configured = self._settings.pai_of(group_key)
        return configured if configured != group_key else self._scopes.get(group_key, group_key)
