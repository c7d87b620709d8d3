"""Durable watch sessions and their subtitle lines, in the skills' SQLite file (``bot.skills.skilldb``).

A session belongs to one group (``group_key``) and its pai; at most one per group is running (``ended_ts``
NULL). Its playback (``bot.skills.watch.sync.Playback``) is rewritten on every member command, so a restart
resumes every running session where it was. Cues are kept per session with who shared them, because the
questions members ask ("what did she just say?") need lines by time, which memory search does not give;
memory holds the same lines in chunks for recall across sessions. Both go with the member who shared them
(``forget_member``) and with their group's retention (``purge_before``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from bot.events import Attachment, ChatRef
from bot.skills.skilldb import SkillDB
from bot.skills.watch.cues import Cue
from bot.skills.watch.sync import Playback

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_sessions (
    id TEXT PRIMARY KEY,
    group_key TEXT NOT NULL,
    pai TEXT NOT NULL,
    platform TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    chat_title TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL,
    kind TEXT NOT NULL,                    -- video | audio
    media TEXT NOT NULL DEFAULT '',        -- the uploaded file (Attachment as JSON), or ''
    link TEXT NOT NULL DEFAULT '',
    source_message TEXT NOT NULL,          -- platform id of the message that shared it
    record_base TEXT NOT NULL,             -- its id in memory (subtitle chunks are <record_base>#sub<n>)
    starter_id TEXT NOT NULL,
    starter_name TEXT NOT NULL,
    control TEXT NOT NULL DEFAULT 'all',   -- all | starter
    playback TEXT NOT NULL,
    furthest REAL NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0,
    player INTEGER NOT NULL DEFAULT 0,     -- 1: members watch in a synchronised player
    participants TEXT NOT NULL DEFAULT '{}',
    started_ts REAL NOT NULL,
    ended_ts REAL
);
CREATE INDEX IF NOT EXISTS watch_sessions_by_group ON watch_sessions(group_key, started_ts);
CREATE TABLE IF NOT EXISTS watch_cues (
    session TEXT NOT NULL,
    idx INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,                  -- the file the line came from (or "embedded", "transcript")
    owner_id TEXT NOT NULL,                -- who shared it
    PRIMARY KEY (session, idx)
);
"""

_COLS = (
    "id, group_key, pai, platform, chat_id, chat_title, title, kind, media, link, source_message, record_base, "
    "starter_id, starter_name, control, playback, furthest, seq, player, participants, started_ts, ended_ts"
)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    group_key: str
    pai: str
    chat: ChatRef
    title: str
    kind: str
    media: Attachment | None
    link: str
    source_message: str
    record_base: str
    starter_id: str
    starter_name: str
    control: str
    playback: Playback
    started_at: datetime
    furthest: float = 0.0
    seq: int = 0
    player: bool = False
    participants: dict[str, str] = field(default_factory=dict)
    ended_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def watched_to(self, now: float) -> float:
        """How far the session got: the furthest position reached, or where it is now if further."""
        return max(self.furthest, self.playback.position_at(now))


def _ts(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, timezone.utc) if ts is not None else None


def _row(s: Session) -> tuple:
    media = json.dumps({"kind": s.media.kind, "name": s.media.name, "mime": s.media.mime, "size": s.media.size,
                        "source": s.media.source}) if s.media else ""  # fmt: skip
    return (
        s.id, s.group_key, s.pai, s.chat.platform, s.chat.chat_id, s.chat.title, s.title, s.kind, media, s.link,
        s.source_message, s.record_base, s.starter_id, s.starter_name, s.control, json.dumps(s.playback.to_dict()),
        s.furthest, s.seq, int(s.player), json.dumps(s.participants, ensure_ascii=False),
        s.started_at.timestamp(), _ts(s.ended_at),
    )  # fmt: skip


def _session(r: tuple) -> Session:
    (sid, gk, pai, platform, chat_id, title_, title, kind, media, link, src, base, starter_id, starter_name,
     control, playback, furthest, seq, player, participants, started, ended) = r  # fmt: skip
    att = Attachment(**json.loads(media)) if media else None
    return Session(
        id=sid, group_key=gk, pai=pai, chat=ChatRef(platform, chat_id, title_), title=title, kind=kind, media=att,
        link=link, source_message=src, record_base=base, starter_id=starter_id, starter_name=starter_name,
        control=control, playback=Playback.from_dict(json.loads(playback)), started_at=_dt(started),  # type: ignore[arg-type]
        furthest=furthest, seq=seq, player=bool(player), participants=json.loads(participants),
        ended_at=_dt(ended),
    )  # fmt: skip


class WatchStore:
    def __init__(self, db: SkillDB) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)

    async def save(self, s: Session) -> None:
        row = _row(s)
        marks = ",".join("?" * len(row))
        await self.db.run(
            lambda c: c.execute(f"INSERT OR REPLACE INTO watch_sessions({_COLS}) VALUES ({marks})", row)
        )

    async def running(self, group_key: str) -> Session | None:
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {_COLS} FROM watch_sessions WHERE group_key=? AND ended_ts IS NULL "
            "ORDER BY started_ts DESC LIMIT 1", (group_key,)).fetchone())  # fmt: skip
        return _session(row) if row else None

    async def all_running(self) -> list[Session]:
        rows = await self.db.run(
            lambda c: c.execute(f"SELECT {_COLS} FROM watch_sessions WHERE ended_ts IS NULL").fetchall()
        )
        return [_session(r) for r in rows]

    async def latest(self, group_key: str) -> Session | None:
        """The group's running session, else the one that started last."""
        row = await self.db.run(lambda c: c.execute(
            f"SELECT {_COLS} FROM watch_sessions WHERE group_key=? "
            "ORDER BY ended_ts IS NOT NULL, started_ts DESC LIMIT 1", (group_key,)).fetchone())  # fmt: skip
        return _session(row) if row else None

    async def get(self, session_id: str) -> Session | None:
        row = await self.db.run(
            lambda c: c.execute(f"SELECT {_COLS} FROM watch_sessions WHERE id=?", (session_id,)).fetchone()
        )
        return _session(row) if row else None

    async def add_cues(self, session_id: str, cues: list[Cue], source: str, owner_id: str) -> int:
        """Add a set of lines to a session (after the ones it has); returns how many it holds now."""

        def body(c: sqlite3.Connection) -> int:
            (n,) = c.execute("SELECT COUNT(*) FROM watch_cues WHERE session=?", (session_id,)).fetchone()
            c.executemany(
                'INSERT INTO watch_cues(session, idx, start, "end", text, source, owner_id) VALUES (?,?,?,?,?,?,?)',
                [(session_id, n + i, q.start, q.end, q.text, source, owner_id) for i, q in enumerate(cues)],
            )
            return n + len(cues)

        return await self.db.tx(body)

    async def cues(self, session_id: str) -> list[Cue]:
        rows = await self.db.run(lambda c: c.execute(
            'SELECT start, "end", text FROM watch_cues WHERE session=? ORDER BY start, idx', (session_id,)
        ).fetchall())  # fmt: skip
        return [Cue(a, b, t) for a, b, t in rows]

    async def cue_count(self, session_id: str) -> int:
        row = await self.db.run(
            lambda c: c.execute("SELECT COUNT(*) FROM watch_cues WHERE session=?", (session_id,)).fetchone()
        )
        return int(row[0])

    async def forget_member(self, group_key: str, user_id: str) -> tuple[int, list[Session]]:
        """Remove what a member shared in a group: the lines they shared and the sessions they started
        (with every line of those), and their name from the others' participants. Returns (rows removed,
        the sessions removed, so the caller can close their players)."""

        def body(c: sqlite3.Connection) -> tuple[int, list[Session]]:
            started = [_session(r) for r in c.execute(
                f"SELECT {_COLS} FROM watch_sessions WHERE group_key=? AND starter_id=?", (group_key, user_id)
            ).fetchall()]  # fmt: skip
            ids = [s.id for s in started]
            removed = 0
            for sid in ids:
                removed += c.execute("DELETE FROM watch_cues WHERE session=?", (sid,)).rowcount
                removed += c.execute("DELETE FROM watch_sessions WHERE id=?", (sid,)).rowcount
            removed += c.execute(
                "DELETE FROM watch_cues WHERE owner_id=? AND session IN (SELECT id FROM watch_sessions "
                "WHERE group_key=?)", (user_id, group_key),
            ).rowcount  # fmt: skip
            for sid, participants in c.execute(
                "SELECT id, participants FROM watch_sessions WHERE group_key=?", (group_key,)
            ).fetchall():
                names = json.loads(participants)
                if names.pop(user_id, None) is not None:
                    c.execute("UPDATE watch_sessions SET participants=? WHERE id=?",
                              (json.dumps(names, ensure_ascii=False), sid))  # fmt: skip
                    removed += 1
            return removed, started

        return await self.db.tx(body)

    async def texts_of_member(self, group_key: str, user_id: str) -> list[str]:
        """What ``forget_member`` would remove that a bot message could quote: the titles of the sessions the
        member started (often a file name) and the lines they shared."""

        def read(c: sqlite3.Connection) -> list[str]:
            titles = [r[0] for r in c.execute(
                "SELECT title FROM watch_sessions WHERE group_key=? AND starter_id=?", (group_key, user_id))]
            lines = [r[0] for r in c.execute(
                "SELECT text FROM watch_cues WHERE owner_id=? AND session IN (SELECT id FROM watch_sessions "
                "WHERE group_key=?)", (user_id, group_key))]  # fmt: skip
            return [t for t in (*titles, *lines) if t]

        return await self.db.run(read)

    async def forget_shared_by(self, group_key: str, message_ids: list[str]) -> tuple[int, list[Session]]:
        """Remove the sessions (and their lines) started from these messages; returns (rows, sessions)."""

        def body(c: sqlite3.Connection) -> tuple[int, list[Session]]:
            marks = ",".join("?" * len(message_ids))
            gone = [_session(r) for r in c.execute(
                f"SELECT {_COLS} FROM watch_sessions WHERE group_key=? AND source_message IN ({marks})",
                (group_key, *message_ids),
            ).fetchall()]  # fmt: skip
            removed = 0
            for sess in gone:
                removed += c.execute("DELETE FROM watch_cues WHERE session=?", (sess.id,)).rowcount
                removed += c.execute("DELETE FROM watch_sessions WHERE id=?", (sess.id,)).rowcount
            return removed, gone

        if not message_ids:
            return 0, []
        return await self.db.tx(body)

    async def purge_before(self, group_key: str, cutoff: datetime) -> int:
        """Remove the group's ended sessions that started before ``cutoff`` (retention)."""

        def body(c: sqlite3.Connection) -> int:
            ids = [r[0] for r in c.execute(
                "SELECT id FROM watch_sessions WHERE group_key=? AND ended_ts IS NOT NULL AND started_ts < ?",
                (group_key, cutoff.timestamp())).fetchall()]  # fmt: skip
            for sid in ids:
                c.execute("DELETE FROM watch_cues WHERE session=?", (sid,))
                c.execute("DELETE FROM watch_sessions WHERE id=?", (sid,))
            return len(ids)

        return await self.db.tx(body)


def ended(s: Session, at: datetime) -> Session:
    return replace(s, ended_at=at)
