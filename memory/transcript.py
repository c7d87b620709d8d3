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
from typing import NamedTuple

from bot.ports import MemoryRecord, SearchFilters
from memory.textnorm import fts_phrase

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
_META_COLS = "seq, chat_key, author_id, author_name, ts, kind"
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


class Pending(NamedTuple):
    """A record waiting for the vector index."""

    seq: int
    pai: str
    id: str
    author_name: str
    text: str


class Meta(NamedTuple):
    """The columns ranking needs, without the text: candidates are scored on these and only the final hits
    are read in full."""

    seq: int
    chat_key: str
    author_id: str
    author_name: str
    ts: float
    kind: str


def _to_row(r: sqlite3.Row | tuple) -> Row:
    seq, pai, rid, chat, aid, aname, text, sent_at, kind, reply, url, is_bot, meta = r
    rec = MemoryRecord(
        id=rid, pai=pai, chat_key=chat, author_id=aid, author_name=aname, text=text,
        sent_at=datetime.fromisoformat(sent_at), kind=kind, reply_to_id=reply, url=url,
        is_bot=bool(is_bot), meta=json.loads(meta) if meta != "{}" else {},
    )  # fmt: skip
    return Row(seq, rec)


def _record_params(seq: int, rec: MemoryRecord) -> tuple:
    meta = json.dumps(rec.meta, ensure_ascii=False, default=str) if rec.meta else "{}"
    return (seq, rec.pai, rec.id, rec.chat_key, rec.author_id, rec.author_name, rec.text, _ts(rec.sent_at),
            rec.sent_at.isoformat(), rec.kind, rec.reply_to_id, rec.url, int(rec.is_bot), meta)  # fmt: skip


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

    def _fts(self, db: sqlite3.Connection, pai: str, created: dict[str, str] | None = None) -> str | None:
        """The FTS table of a pai. A writer passes ``created``: a pai's table is made on its first write and
        noted there, and the caller makes it known to other threads (``_tags``) only once its transaction has
        committed; a reader on another connection would not find the table before."""
        tag = self._tags.get(pai) or (created or {}).get(pai)
        if tag is None:
            row = db.execute("SELECT tag FROM pais WHERE pai = ?", (pai,)).fetchone()
            if row is not None:
                tag = self._tags[pai] = row[0]
            elif created is None:
                return None
            else:
                tag = created[pai] = pai_tag(pai)
                db.execute("INSERT INTO pais(pai, tag) VALUES (?, ?)", (pai, tag))
                db.execute(f'CREATE VIRTUAL TABLE "fts_{tag}" USING fts5(author, body, tokenize=\'{FTS_TOKENIZER}\')')
        return f'"fts_{tag}"'

    # ------------------------------------------------------------------ writes

    def insert(self, records: Sequence[MemoryRecord], index_text: IndexText) -> list[Row]:
        """Insert (or update, when the text or author name changed) in one transaction; returns the rows that
        are new or changed. Re-inserting an identical record changes nothing (idempotent on ``(pai, id)``).

        New records are written with ``executemany`` under sequence numbers taken from ``sqlite_sequence``
        (what AUTOINCREMENT would have given them: the write lock makes this the only writer)."""
        changed: list[Row] = []
        created: dict[str, str] = {}  # pais whose FTS table this transaction makes
        with self._write_lock, self._db() as db:
            known = self._known(db, records)
            stones = db.execute("SELECT 1 FROM index_tombstones LIMIT 1").fetchone() is not None
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
            next_seq = (int(row[0]) if row else 0) + 1
            new_rows: list[tuple] = []
            fts_rows: dict[str, list[tuple[int, str, str]]] = {}
            for rec in records:
                fts = self._fts(db, rec.pai, created)
                old = known.get((rec.pai, rec.id))
                if old is None:
                    seq, next_seq = next_seq, next_seq + 1
                    new_rows.append(_record_params(seq, rec))
                elif (old[1], old[2]) != (rec.text, rec.author_name):
                    seq = old[0]
                    self._flush_new(db, new_rows, fts_rows)  # the edited row may be among them
                    db.execute(
                        "UPDATE records SET text = ?, author_name = ?, indexed = 0 WHERE seq = ?",
                        (rec.text, rec.author_name, seq),
                    )
                    db.execute(f"DELETE FROM {fts} WHERE rowid = ?", (seq,))
                else:
                    continue
                known[(rec.pai, rec.id)] = (seq, rec.text, rec.author_name)
                author, body = index_text(rec)
                fts_rows.setdefault(fts, []).append((seq, author, body))
                changed.append(Row(seq, rec))
            self._flush_new(db, new_rows, fts_rows)
            if stones:
                done = [(r.record.pai, r.record.id) for r in changed]
                db.executemany("DELETE FROM index_tombstones WHERE pai = ? AND id = ?", done)
        self._tags.update(created)  # committed: other threads may use these tables now
        return changed

    @staticmethod
    def _flush_new(db: sqlite3.Connection, new_rows: list[tuple],
                   fts_rows: dict[str, list[tuple[int, str, str]]]) -> None:  # fmt: skip
        db.executemany(
            "INSERT INTO records(seq, pai, id, chat_key, author_id, author_name, text, ts, sent_at, kind,"
            " reply_to_id, url, is_bot, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            new_rows,
        )
        for fts, rows in fts_rows.items():
            db.executemany(f"INSERT INTO {fts}(rowid, author, body) VALUES (?, ?, ?)", rows)
        new_rows.clear()
        fts_rows.clear()

    @staticmethod
    def _known(db: sqlite3.Connection, records: Sequence[MemoryRecord]) -> dict[tuple[str, str], tuple[int, str, str]]:
        """``(pai, id) -> (seq, text, author_name)`` of the records already in the transcript."""
        by_pai: dict[str, list[str]] = {}
        for rec in records:
            by_pai.setdefault(rec.pai, []).append(rec.id)
        known: dict[tuple[str, str], tuple[int, str, str]] = {}
        for pai, ids in by_pai.items():
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for rid, seq, text, name in db.execute(
                    f"SELECT id, seq, text, author_name FROM records WHERE pai = ? AND id IN ({marks})", (pai, *chunk)
                ):
                    known[(pai, rid)] = (int(seq), text, name)
        return known

    def _delete(self, db: sqlite3.Connection, pai: str, where: str, args: tuple) -> list[str]:
        rows = db.execute(f"SELECT seq, id FROM records WHERE pai = ? AND ({where})", (pai, *args)).fetchall()
        fts = self._fts(db, pai)
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

    def pending(self, limit: int) -> list[Pending]:
        """Records the vector index has not absorbed yet, oldest first (just what embedding needs)."""
        rows = self._db().execute(
            "SELECT seq, pai, id, author_name, text FROM records WHERE indexed = 0 ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [Pending(*r) for r in rows]

    def pending_count(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM records WHERE indexed = 0").fetchone()[0])

    def mark_indexed(self, seqs: Iterable[int], texts: dict[int, str] | None = None) -> None:
        """Mark rows indexed, unless their text changed meanwhile (``texts`` = the text that was indexed)."""
        texts, seqs = texts or {}, list(seqs)
        checked = [(seq, texts[seq]) for seq in seqs if seq in texts]
        plain = [(seq,) for seq in seqs if seq not in texts]
        if not checked and not plain:
            return
        with self._write_lock, self._db() as db:
            db.executemany("UPDATE records SET indexed = 1 WHERE seq = ? AND text = ?", checked)
            db.executemany("UPDATE records SET indexed = 1 WHERE seq = ?", plain)

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
        if not items:
            return  # no empty write transaction (and no fsync) per index batch
        with self._write_lock, self._db() as db:
            db.executemany("DELETE FROM index_tombstones WHERE pai = ? AND id = ?", items)

    def kv_get(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def kv_set(self, key: str, value: str) -> None:
        with self._write_lock, self._db() as db:
            db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ reads

    def term_counts(self, pai: str, terms: Sequence[str], cap: int) -> list[int]:
        """How many of the pai's records hold each term, counted up to ``cap + 1`` (so the cost of asking is
        bounded however common the term is). Used to plan which terms a lexical query can afford to rank."""
        db = self._db()
        fts = self._fts(db, pai)
        if fts is None:
            return [0] * len(terms)
        q = f"SELECT count(*) FROM (SELECT rowid FROM {fts} WHERE {fts} MATCH ? LIMIT ?)"
        return [int(db.execute(q, (fts_phrase(t), cap + 1)).fetchone()[0]) for t in terms]

    def lexical(self, pai: str, match: str, limit: int, filters: SearchFilters | None,
                weights: tuple[float, float] = (0.6, 1.0), min_seq: int = 0) -> list[tuple[int, float]]:  # fmt: skip
        """BM25 over the pai's FTS table: ``(seq, score)`` best first, scores positive (higher = better).
        ``min_seq`` confines ranking to records from that sequence number on (FTS5 skips the older postings;
        the scores keep the whole table's statistics)."""
        db = self._db()
        fts = self._fts(db, pai)
        if fts is None or not match:
            return []
        where, args = filter_sql(filters)
        if not where:
            # the FTS table is the pai's own: without filters no join is needed
            rows = db.execute(
                f"SELECT rowid, bm25({fts}, ?, ?) AS s FROM {fts} WHERE {fts} MATCH ? AND rowid >= ?"
                " ORDER BY s LIMIT ?",
                (*weights, match, min_seq, limit),
            ).fetchall()
            return [(int(seq), -float(s)) for seq, s in rows]
        rows = db.execute(
            f"SELECT f.rowid, bm25({fts}, ?, ?) AS s FROM {fts} f JOIN records r ON r.seq = f.rowid"
            f" WHERE {fts} MATCH ? AND f.rowid >= ? AND +r.pai = ?{where} ORDER BY s LIMIT ?",
            (*weights, match, min_seq, pai, *args, limit),
        ).fetchall()
        return [(int(seq), -float(s)) for seq, s in rows]

    def window_start(self, pai: str, match: str, rows: int, filters: SearchFilters | None) -> int:
        """The sequence number from which on the pai holds the ``rows`` most recent records matching
        ``match`` (0 when it holds fewer). Streams postings newest first without ranking them: cheap."""
        db = self._db()
        fts = self._fts(db, pai)
        if fts is None or not match or rows <= 0:
            return 0
        where, args = filter_sql(filters)
        if not where:
            row = db.execute(
                f"SELECT rowid FROM {fts} WHERE {fts} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                (match, rows - 1),
            ).fetchone()
        else:
            row = db.execute(
                f"SELECT f.rowid FROM {fts} f JOIN records r ON r.seq = f.rowid WHERE {fts} MATCH ?"
                f" AND +r.pai = ?{where} ORDER BY f.rowid DESC LIMIT 1 OFFSET ?",
                (match, pai, *args, rows - 1),
            ).fetchone()
        return int(row[0]) if row else 0

    def by_seqs(self, pai: str, seqs: Sequence[int]) -> dict[int, Row]:
        """Full rows (text, metadata) of the pai's records with these sequence numbers."""
        out: dict[int, Row] = {}
        for chunk in _chunks(list(seqs), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT {_COLS} FROM records WHERE +pai = ? AND seq IN ({marks})", (pai, *chunk)
            ):
                row = _to_row(r)
                out[row.seq] = row
        return out

    def metas(self, pai: str, seqs: Sequence[int]) -> dict[int, Meta]:
        """What ranking needs of the pai's records with these sequence numbers (no text, no JSON)."""
        out: dict[int, Meta] = {}
        for chunk in _chunks(list(seqs), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT {_META_COLS} FROM records WHERE +pai = ? AND seq IN ({marks})", (pai, *chunk)
            ):
                out[r[0]] = Meta(*r)
        return out

    def metas_by_ids(self, pai: str, ids: Sequence[str], filters: SearchFilters | None = None) -> dict[str, Meta]:
        """``metas`` keyed by record id, for the pai's records with these ids that pass the filters."""
        where, args = filter_sql(filters, alias="")
        out: dict[str, Meta] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT id, {_META_COLS} FROM records WHERE pai = ? AND id IN ({marks}){where}",
                (pai, *chunk, *args),
            ):
                out[r[0]] = Meta(*r[1:])
        return out

    def neighbour_seqs(self, pai: str, chat_key: str, seq: int, width: int) -> list[int]:
        """Sequence numbers of up to ``width`` records on each side of record ``seq`` in the same chat
        (arrival order). Index-only lookups."""
        db = self._db()
        q = "SELECT seq FROM records WHERE pai = ? AND chat_key = ? AND seq {op} ? ORDER BY seq {d} LIMIT ?"
        args = (pai, chat_key, seq, width)
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
