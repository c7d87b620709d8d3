"""The SQLite transcript: the source of truth of every pai's memory, with its lexical (FTS5) index.

Durability: WAL with ``synchronous=FULL``. ``MemoryStore.record`` promises the record is durable when it
returns, including across a power cut, and the inbox acknowledges platforms on that basis; FULL costs one
fsync per *transaction*, which imports amortise by committing in batches. (NORMAL would survive a process
crash but may lose the last commits on power loss.)

Isolation: every query takes the pai and filters on it, and each pai has its own FTS5 table (named by a hash
of the pai key), so lexical statistics and matches never mix groups.

Index bookkeeping lives here too, so it is as durable as the records: ``records.indexed = 0`` marks a record
the vector index has not absorbed yet (a crash before indexing is repaired at the next start), and
``index_tombstones`` lists records removed from the transcript whose vectors still have to be deleted.

Thread safety: each thread gets its own connection (readers run in parallel under WAL); writers serialise on
one lock. All methods block; the store calls them off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bot.ports import MemoryRecord, SearchFilters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pai TEXT NOT NULL, id TEXT NOT NULL, chat_key TEXT NOT NULL,
    author_id TEXT NOT NULL, author_name TEXT NOT NULL, text TEXT NOT NULL,
    ts REAL NOT NULL, sent_at TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'message',
    reply_to_id TEXT, url TEXT NOT NULL DEFAULT '', is_bot INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}', indexed INTEGER NOT NULL DEFAULT 0,
    UNIQUE(pai, id)
);
CREATE INDEX IF NOT EXISTS records_pai_ts ON records(pai, ts, seq);
CREATE INDEX IF NOT EXISTS records_pai_chat ON records(pai, chat_key, seq);
CREATE INDEX IF NOT EXISTS records_author ON records(pai, author_id);
CREATE INDEX IF NOT EXISTS records_pending ON records(indexed) WHERE indexed = 0;
CREATE TABLE IF NOT EXISTS pais(pai TEXT PRIMARY KEY, tag TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS index_tombstones(pai TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY(pai, id));
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLS = "seq, pai, id, chat_key, author_id, author_name, text, sent_at, kind, reply_to_id, url, is_bot, meta"
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"


IndexText = Callable[[MemoryRecord], tuple[str, str]]
"""Turns a record into the (author, body) text its FTS row indexes."""


def pai_tag(pai: str) -> str:
    """A stable, name-safe tag for a pai key (used for its FTS table and its chroma collection)."""
    return hashlib.sha256(pai.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Row:
    """A transcript record with its storage sequence number (order of arrival, used for neighbours)."""

    seq: int
    record: MemoryRecord


def _to_row(r: sqlite3.Row | tuple) -> Row:
    seq, pai, rid, chat, aid, aname, text, sent_at, kind, reply, url, is_bot, meta = r
    rec = MemoryRecord(
        id=rid, pai=pai, chat_key=chat, author_id=aid, author_name=aname, text=text,
        sent_at=datetime.fromisoformat(sent_at), kind=kind, reply_to_id=reply, url=url,
        is_bot=bool(is_bot), meta=json.loads(meta) if meta != "{}" else {},
    )  # fmt: skip
    return Row(seq, rec)


def _ts(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


class Transcript:
    """The SQLite source of truth. See the module docstring for the durability and isolation rules."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._tags: dict[str, str] = {}
        with self._write_lock, self._db() as db:
            db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ connections

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.create_function("casefold", 1, _casefold, deterministic=True)
            self._local.db = db
            with self._conns_lock:
                self._conns.append(db)
        return db

    def close(self) -> None:
        with self._conns_lock:
            for db in self._conns:
                db.close()
            self._conns.clear()
        self._local = threading.local()

    def _fts(self, db: sqlite3.Connection, pai: str, create: bool) -> str | None:
        """The FTS table of a pai (created on first write)."""
        tag = self._tags.get(pai)
        if tag is None:
            row = db.execute("SELECT tag FROM pais WHERE pai = ?", (pai,)).fetchone()
            if row is None:
                if not create:
                    return None
                tag = pai_tag(pai)
                db.execute("INSERT INTO pais(pai, tag) VALUES (?, ?)", (pai, tag))
                db.execute(f'CREATE VIRTUAL TABLE "fts_{tag}" USING fts5(author, body, tokenize=\'{FTS_TOKENIZER}\')')
            else:
                tag = row[0]
            self._tags[pai] = tag
        return f'"fts_{tag}"'

    # ------------------------------------------------------------------ writes

    def insert(self, records: Sequence[MemoryRecord], index_text: IndexText) -> list[Row]:
        """Insert (or update, when the text or author name changed) in one transaction; returns the rows that
        are new or changed. Re-inserting an identical record changes nothing (idempotent on ``(pai, id)``)."""
        changed: list[Row] = []
        with self._write_lock, self._db() as db:
            for rec in records:
                old = db.execute(
                    "SELECT seq, text, author_name FROM records WHERE pai = ? AND id = ?", (rec.pai, rec.id)
                ).fetchone()
                fts = self._fts(db, rec.pai, create=True)
                author, body = index_text(rec)
                if old is None:
                    cur = db.execute(
                        "INSERT INTO records(pai, id, chat_key, author_id, author_name, text, ts, sent_at, kind,"
                        " reply_to_id, url, is_bot, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (rec.pai, rec.id, rec.chat_key, rec.author_id, rec.author_name, rec.text,
                         _ts(rec.sent_at), rec.sent_at.isoformat(), rec.kind, rec.reply_to_id, rec.url,
                         int(rec.is_bot), json.dumps(rec.meta, ensure_ascii=False, default=str)),
                    )  # fmt: skip
                    seq = int(cur.lastrowid or 0)
                elif (old[1], old[2]) != (rec.text, rec.author_name):
                    seq = int(old[0])
                    db.execute(
                        "UPDATE records SET text = ?, author_name = ?, indexed = 0 WHERE seq = ?",
                        (rec.text, rec.author_name, seq),
                    )
                    db.execute(f"DELETE FROM {fts} WHERE rowid = ?", (seq,))
                else:
                    continue
                db.execute(f"INSERT INTO {fts}(rowid, author, body) VALUES (?, ?, ?)", (seq, author, body))
                db.execute("DELETE FROM index_tombstones WHERE pai = ? AND id = ?", (rec.pai, rec.id))
                changed.append(Row(seq, rec))
        return changed

    def _delete(self, db: sqlite3.Connection, pai: str, where: str, args: tuple) -> list[str]:
        rows = db.execute(f"SELECT seq, id FROM records WHERE pai = ? AND ({where})", (pai, *args)).fetchall()
        fts = self._fts(db, pai, create=False)
        for seq, rid in rows:
            db.execute("DELETE FROM records WHERE seq = ?", (seq,))
            if fts:
                db.execute(f"DELETE FROM {fts} WHERE rowid = ?", (seq,))
            db.execute("INSERT OR IGNORE INTO index_tombstones(pai, id) VALUES (?, ?)", (pai, rid))
        return [rid for _, rid in rows]

    def forget(self, pai: str, author_id: str | None = None, ids: Sequence[str] = ()) -> list[str]:
        """Delete the pai's records by author and/or id (either matches); returns the removed ids and leaves
        a tombstone for each so the vector index drops them too."""
        removed: list[str] = []
        with self._write_lock, self._db() as db:
            if author_id is not None:
                removed += self._delete(db, pai, "author_id = ?", (author_id,))
            for chunk in _chunks(list(ids), 500):
                marks = ",".join("?" * len(chunk))
                removed += self._delete(db, pai, f"id IN ({marks})", tuple(chunk))
        return removed

    def purge_before(self, cutoff: datetime, chat_key: str | None = None) -> list[tuple[str, str]]:
        """Retention: delete records sent before ``cutoff`` (of one chat, or all); returns ``(pai, id)``."""
        out: list[tuple[str, str]] = []
        with self._write_lock, self._db() as db:
            q, args = "SELECT DISTINCT pai FROM records WHERE ts < ?", (_ts(cutoff),)
            if chat_key is not None:
                q, args = q + " AND chat_key = ?", (*args, chat_key)
            for (pai,) in db.execute(q, args).fetchall():
                where, wargs = ("ts < ?", (_ts(cutoff),))
                if chat_key is not None:
                    where, wargs = "ts < ? AND chat_key = ?", (_ts(cutoff), chat_key)
                out += [(pai, rid) for rid in self._delete(db, pai, where, wargs)]
        return out

    # ------------------------------------------------------------------ index bookkeeping

    def pending(self, limit: int) -> list[Row]:
        rows = self._db().execute(
            f"SELECT {_COLS} FROM records WHERE indexed = 0 ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [_to_row(r) for r in rows]

    def pending_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM records WHERE indexed = 0").fetchone()[0])

    def mark_indexed(self, seqs: Iterable[int], texts: dict[int, str] | None = None) -> None:
        """Mark rows indexed, unless their text changed meanwhile (``texts`` = the text that was indexed)."""
        with self._write_lock, self._db() as db:
            for seq in seqs:
                if texts and seq in texts:
                    db.execute("UPDATE records SET indexed = 1 WHERE seq = ? AND text = ?", (seq, texts[seq]))
                else:
                    db.execute("UPDATE records SET indexed = 1 WHERE seq = ?", (seq,))

    def mark_all_pending(self) -> None:
        with self._write_lock, self._db() as db:
            db.execute("UPDATE records SET indexed = 0")

    def mark_pending(self, pai: str) -> None:
        with self._write_lock, self._db() as db:
            db.execute("UPDATE records SET indexed = 0 WHERE pai = ?", (pai,))

    def indexed_counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT pai, count(*) FROM records WHERE indexed = 1 GROUP BY pai")
        return {pai: int(n) for pai, n in rows}

    def chat_keys(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT DISTINCT chat_key FROM records")]

    def tombstones(self, limit: int) -> list[tuple[str, str]]:
        return self._db().execute("SELECT pai, id FROM index_tombstones LIMIT ?", (limit,)).fetchall()

    def clear_tombstones(self, items: Sequence[tuple[str, str]]) -> None:
        with self._write_lock, self._db() as db:
            db.executemany("DELETE FROM index_tombstones WHERE pai = ? AND id = ?", items)

    def kv_get(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def kv_set(self, key: str, value: str) -> None:
        with self._write_lock, self._db() as db:
            db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ reads

    def lexical(self, pai: str, match: str, limit: int, filters: SearchFilters | None,
                weights: tuple[float, float] = (0.6, 1.0)) -> list[tuple[int, float]]:  # fmt: skip
        """BM25 over the pai's FTS table: ``(seq, score)`` best first, scores positive (higher = better)."""
        db = self._db()
        fts = self._fts(db, pai, create=False)
        if fts is None or not match:
            return []
        where, args = filter_sql(filters)
        if not where:
            # the FTS table is the pai's own: without filters no join is needed (rows are re-read by pai later)
            rows = db.execute(
                f"SELECT rowid, bm25({fts}, ?, ?) AS s FROM {fts} WHERE {fts} MATCH ? ORDER BY s LIMIT ?",
                (*weights, match, limit),
            ).fetchall()
            return [(int(seq), -float(s)) for seq, s in rows]
        rows = db.execute(
            f"SELECT f.rowid, bm25({fts}, ?, ?) AS s FROM {fts} f JOIN records r ON r.seq = f.rowid"
            f" WHERE {fts} MATCH ? AND +r.pai = ?{where} ORDER BY s LIMIT ?",
            (*weights, match, pai, *args, limit),
        ).fetchall()
        return [(int(seq), -float(s)) for seq, s in rows]

    def by_seqs(self, pai: str, seqs: Sequence[int]) -> dict[int, Row]:
        out: dict[int, Row] = {}
        for chunk in _chunks(list(seqs), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT {_COLS} FROM records WHERE +pai = ? AND seq IN ({marks})", (pai, *chunk)
            ):
                row = _to_row(r)
                out[row.seq] = row
        return out

    def by_ids(self, pai: str, ids: Sequence[str], filters: SearchFilters | None = None) -> dict[str, Row]:
        where, args = filter_sql(filters, alias="")
        out: dict[str, Row] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT {_COLS} FROM records WHERE pai = ? AND id IN ({marks}){where}", (pai, *chunk, *args)
            ):
                row = _to_row(r)
                out[row.record.id] = row
        return out

    def neighbour_seqs(self, pai: str, row: Row, width: int) -> list[int]:
        """Sequence numbers of up to ``width`` records on each side of ``row`` in the same chat (arrival
        order). Index-only lookups; fetch the rows with ``by_seqs``."""
        db = self._db()
        q = "SELECT seq FROM records WHERE pai = ? AND chat_key = ? AND seq {op} ? ORDER BY seq {d} LIMIT ?"
        args = (pai, row.record.chat_key, row.seq, width)
        before = db.execute(q.format(op="<", d="DESC"), args).fetchall()
        after = db.execute(q.format(op=">", d="ASC"), args).fetchall()
        return [int(r[0]) for r in (*before, *after)]

    def recent(self, pai: str, n: int, before: datetime | None = None) -> list[MemoryRecord]:
        where, args = ("", ()) if before is None else (" AND ts < ?", (_ts(before),))
        rows = self._db().execute(
            f"SELECT {_COLS} FROM records WHERE pai = ?{where} ORDER BY ts DESC, seq DESC LIMIT ?",
            (pai, *args, n),
        ).fetchall()
        return [_to_row(r).record for r in reversed(rows)]

    def author_names(self, pai: str) -> dict[str, str]:
        """Normalised display name -> author id, for spotting members named in a query."""
        rows = self._db().execute(
            "SELECT author_name, author_id FROM records WHERE pai = ? GROUP BY author_id, author_name", (pai,)
        )
        return {name.casefold(): aid for name, aid in rows if name}

    def export(self, pai: str) -> Iterator[MemoryRecord]:
        cur = self._db().execute(f"SELECT {_COLS} FROM records WHERE pai = ? ORDER BY ts, seq", (pai,))
        for r in cur:
            yield _to_row(r).record

    def all_rows(self, after_seq: int, limit: int) -> list[Row]:
        rows = self._db().execute(
            f"SELECT {_COLS} FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [_to_row(r) for r in rows]

    def stats(self) -> list[dict[str, object]]:
        rows = self._db().execute(
            "SELECT pai, count(*), sum(indexed = 0), min(sent_at), max(sent_at), count(DISTINCT author_id)"
            " FROM records GROUP BY pai ORDER BY pai"
        ).fetchall()
        keys = ("pai", "records", "pending_index", "first", "last", "authors")
        return [dict(zip(keys, r)) for r in rows]

    def pais(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT pai FROM pais ORDER BY pai")]


def filter_sql(filters: SearchFilters | None, alias: str = "r.") -> tuple[str, tuple]:
    """SQL conditions (with a leading AND) for the search filters."""
    if filters is None:
        return "", ()
    parts: list[str] = []
    args: list[object] = []
    if filters.author_ids or filters.author_names:
        ors = []
        if filters.author_ids:
            ors.append(f"{alias}author_id IN ({','.join('?' * len(filters.author_ids))})")
            args += filters.author_ids
        if filters.author_names:
            ors.append(f"casefold({alias}author_name) IN ({','.join('?' * len(filters.author_names))})")
            args += [n.casefold() for n in filters.author_names]
        parts.append("(" + " OR ".join(ors) + ")")
    if filters.since is not None:
        parts.append(f"{alias}ts >= ?")
        args.append(_ts(filters.since))
    if filters.until is not None:
        parts.append(f"{alias}ts < ?")
        args.append(_ts(filters.until))
    if filters.kinds:
        parts.append(f"{alias}kind IN ({','.join('?' * len(filters.kinds))})")
        args += filters.kinds
    return ("".join(" AND " + p for p in parts), tuple(args))


def _casefold(value: str | None) -> str | None:
    return value.casefold() if value else value


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
