"""The SQLite transcript: the source of truth of every pai's memory, with its lexical (FTS5) index.

Durability: WAL with ``synchronous=FULL``. ``MemoryStore.record`` promises the record is durable when it
returns, including across a power cut, and the inbox acknowledges platforms on that basis; FULL costs one
fsync per *transaction*, which imports amortise by committing in batches. (NORMAL would survive a process
crash but may lose the last commits on power loss.)

Isolation: every query takes the pai and filters on it, and each pai has its own FTS5 tables (named by a hash
of the pai key; see ``memory.fts``), so lexical statistics and matches never mix groups.

Kinds: every record is stored with its kind (``bot.ports.RECORD_KINDS``); a record that arrives unclassified
(an import, the JSONL of an older export) is classified from its text by the transcript's ``KindRules``.
Opening a database written before kinds existed classifies its records and rebuilds its lexical index once
(``SCHEMA_VERSION``); so does opening one whose word index has an older layout (``rebuild_lexical`` does it on
demand).

Index bookkeeping lives here too, so it is as durable as the records: ``records.indexed = 0`` marks a record
the vector index has not absorbed yet (a crash before indexing is repaired at the next start), ``2`` a record
that needs no vector (only evidence is embedded), and
``index_tombstones`` lists records removed from the transcript whose vectors still have to be deleted.

Thread safety: each thread gets its own connection (readers run in parallel under WAL); writers serialise on
one lock. All methods block; the store calls them off the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from bot.ports import BOT, EVIDENCE_KINDS, RECORD_KINDS, MemoryRecord, SearchFilters
from memory import fts
from memory.fts import IndexText
from memory.kinds import KindRules
from memory.rows import (
    COLS, META_COLS, NO_VECTOR, SCHEMA_VERSION, Meta, Pending, Row, casefold, chunks, filter_sql, pai_tag,
    record_params, to_row, ts_of,
)  # fmt: skip
from memory.querytime import says_time
from memory.textnorm import index_terms

__all__ = ["Meta", "Pending", "Row", "Transcript", "default_index_text", "filter_sql", "pai_tag"]

log = logging.getLogger("paibot.memory")

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

COUNTS_KEPT = 4096  # term counts a search thread keeps between commits (see Transcript.term_counts)


class Transcript:
    """The SQLite source of truth. See the module docstring for the durability and isolation rules."""

    def __init__(self, path: Path, rules: KindRules | None = None, index_text: IndexText | None = None) -> None:
        self.path = path
        self.rules = rules or KindRules()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._tags: dict[str, str] = {}
        with self._write_lock, self._db() as db:
            db.executescript(_SCHEMA)
            version = db.execute("SELECT value FROM kv WHERE key = 'schema'").fetchone()
            if version is None or version[0] != SCHEMA_VERSION:
                self._migrate(db, index_text or default_index_text)

    # ------------------------------------------------------------------ connections

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")  # deleted text is overwritten, not left in free pages
            db.create_function("casefold", 1, casefold, deterministic=True)
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

    def _tag(self, db: sqlite3.Connection, pai: str, created: dict[str, str] | None = None) -> str | None:
        """The tag naming a pai's FTS tables. A writer passes ``created``: a pai's tables are made on its first
        write and noted there, and the caller makes them known to other threads (``_tags``) only once its
        transaction has committed; a reader on another connection would not find the tables before."""
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
                fts.create_tables(db, tag)
        return tag

    def _table(self, db: sqlite3.Connection, pai: str, evidence: bool) -> str | None:
        tag = self._tag(db, pai)
        if tag is None:
            return None
        return fts.evidence_table(tag) if evidence else fts.other_table(tag)

    def _migrate(self, db: sqlite3.Connection, index_text: IndexText) -> None:
        """Bring a database written by an older version to ``SCHEMA_VERSION``: classify unclassified records,
        stop embedding what is not evidence, and rebuild every pai's lexical index in the current layout."""
        marks = ",".join("?" * len(RECORD_KINDS))
        rows = db.execute(f"SELECT seq, text, is_bot FROM records WHERE kind NOT IN ({marks})", RECORD_KINDS).fetchall()
        db.executemany("UPDATE records SET kind = ? WHERE seq = ?",
                       [(self.rules.classify(text, bool(is_bot)), seq) for seq, text, is_bot in rows])  # fmt: skip
        ev = ",".join("?" * len(EVIDENCE_KINDS))
        db.execute(
            f"INSERT OR IGNORE INTO index_tombstones(pai, id) SELECT pai, id FROM records"
            f" WHERE indexed = 1 AND kind NOT IN ({ev})", EVIDENCE_KINDS,
        )  # fmt: skip
        db.execute(f"UPDATE records SET indexed = {NO_VECTOR} WHERE kind NOT IN ({ev})", EVIDENCE_KINDS)
        self._rebuild_lexical(db, index_text)
        db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def rebuild_lexical(self, index_text: IndexText) -> None:
        """Write every pai's word index again from the records, in the current layout (``paibot memory
        reindex``; opening an older database does it once by itself)."""
        with self._write_lock, self._db() as db:
            self._rebuild_lexical(db, index_text)

    @staticmethod
    def _rebuild_lexical(db: sqlite3.Connection, index_text: IndexText) -> None:
        for pai, tag in db.execute("SELECT pai, tag FROM pais").fetchall():
            fts.drop_tables(db, tag)
            fts.create_tables(db, tag)
            after = 0
            while batch := db.execute(f"SELECT {COLS} FROM records WHERE pai = ? AND seq > ? ORDER BY seq LIMIT 5000",
                                      (pai, after)).fetchall():  # fmt: skip
                loaded = [to_row(r) for r in batch]
                fts.write_rows(db, tag, pai, [(r.seq, r.record) for r in loaded], index_text)
                after = loaded[-1].seq

    # ------------------------------------------------------------------ writes

    def insert(self, records: Sequence[MemoryRecord], index_text: IndexText) -> list[Row]:
        """Insert (or update, when the text or author name changed) in one transaction; returns the rows that
        are new or changed, with their kinds (unclassified records are classified here). Re-inserting an
        identical record changes nothing (idempotent on ``(pai, id)``). An update is an edit only when the
        author is the same: a record whose id is taken by another author is refused (and logged), never merged
        into the other person's record.

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
            fts_rows: dict[tuple[str, str], list[tuple[int, MemoryRecord]]] = {}  # by (pai, tag)
            refused = 0
            for rec in records:
                kind = self.rules.kind_of(rec)
                if kind != rec.kind:
                    rec = dataclasses.replace(rec, kind=kind)
                tag = self._tag(db, rec.pai, created)
                assert tag is not None
                old = known.get((rec.pai, rec.id))
                if old is None:
                    seq, next_seq = next_seq, next_seq + 1
                    new_rows.append(record_params(seq, rec))
                elif old[4] != rec.author_id:
                    # The bot's own message seen again from the platform (Matrix sync, Discord's gateway)
                    # under its platform id: the same message, already kept; anything else is refused.
                    refused += not (old[3] == BOT and rec.is_bot)
                    continue
                elif (old[1], old[2]) != (rec.text, rec.author_name):
                    seq = old[0]
                    self._flush_new(db, new_rows, fts_rows, index_text)  # the edited row may be among them
                    db.execute(
                        "UPDATE records SET text = ?, author_name = ?, indexed = ? WHERE seq = ?",
                        (rec.text, rec.author_name, 0 if fts.is_evidence(old[3]) else NO_VECTOR, seq),
                    )
                    fts.delete_row(db, tag, seq, old[3])
                    rec = dataclasses.replace(rec, kind=old[3])  # a record keeps the kind it was stored with
                else:
                    continue
                known[(rec.pai, rec.id)] = (seq, rec.text, rec.author_name, rec.kind, rec.author_id)
                fts_rows.setdefault((rec.pai, tag), []).append((seq, rec))
                changed.append(Row(seq, rec, updated=old is not None))
            self._flush_new(db, new_rows, fts_rows, index_text)
            if stones:
                done = [(r.record.pai, r.record.id) for r in changed if fts.is_evidence(r.record.kind)]
                db.executemany("DELETE FROM index_tombstones WHERE pai = ? AND id = ?", done)
        self._tags.update(created)  # committed: other threads may use these tables now
        if refused:
            log.warning("refused %d record(s) whose id another author's record already has (pai %s)",
                        refused, pai_tag(records[0].pai)[:8])
        return changed

    @staticmethod
    def _flush_new(db: sqlite3.Connection, new_rows: list[tuple],
                   fts_rows: dict[tuple[str, str], list[tuple[int, MemoryRecord]]],
                   index_text: IndexText) -> None:  # fmt: skip
        db.executemany(
            "INSERT INTO records(seq, pai, id, chat_key, author_id, author_name, text, ts, sent_at, kind,"
            " reply_to_id, url, is_bot, meta, indexed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            new_rows,
        )
        for (pai, tag), rows in fts_rows.items():
            fts.write_rows(db, tag, pai, rows, index_text)
        new_rows.clear()
        fts_rows.clear()

    @staticmethod
    def _known(
        db: sqlite3.Connection, records: Sequence[MemoryRecord]
    ) -> dict[tuple[str, str], tuple[int, str, str, str, str]]:
        """``(pai, id) -> (seq, text, author_name, kind, author_id)`` of the records already in the transcript."""
        by_pai: dict[str, list[str]] = {}
        for rec in records:
            by_pai.setdefault(rec.pai, []).append(rec.id)
        known: dict[tuple[str, str], tuple[int, str, str, str, str]] = {}
        for pai, ids in by_pai.items():
            for chunk in chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for rid, seq, text, name, kind, aid in db.execute(
                    f"SELECT id, seq, text, author_name, kind, author_id FROM records"
                    f" WHERE pai = ? AND id IN ({marks})",
                    (pai, *chunk),
                ):
                    known[(pai, rid)] = (int(seq), text, name, kind, aid)
        return known

    def _delete(self, db: sqlite3.Connection, pai: str, where: str, args: tuple) -> list[str]:
        """Delete matching records, their FTS rows and (through tombstones) their vectors; the context of the
        turns that followed a removed statement is written again without it."""
        rows = db.execute(f"SELECT seq, id, kind, chat_key FROM records WHERE pai = ? AND ({where})",
                          (pai, *args)).fetchall()  # fmt: skip
        tag = self._tag(db, pai)
        touched: dict[str, int] = {}
        for seq, rid, kind, chat in rows:
            db.execute("DELETE FROM records WHERE seq = ?", (seq,))
            if tag:
                fts.delete_row(db, tag, seq, kind)
            if fts.is_evidence(kind):
                db.execute("INSERT OR IGNORE INTO index_tombstones(pai, id) VALUES (?, ?)", (pai, rid))
            if kind in fts.CONTEXT_KINDS:
                touched[chat] = min(touched.get(chat, seq), seq)
        if tag:
            for chat, seq in touched.items():
                for after in self._context_starts(db, pai, chat, seq, {s for s, *_ in rows}):
                    fts.refresh_context(db, tag, pai, chat, after)
        return [rid for _, rid, _, _ in rows]

    @staticmethod
    def _context_starts(db: sqlite3.Connection, pai: str, chat: str, first: int, removed: set[int]) -> list[int]:
        """Where to refresh context after removing ``removed``: after each removed sequence number (a bulk
        removal refreshes each gap once; context reaches only ``FAR + 1`` turns ahead)."""
        return sorted(s for s in removed if s >= first) if len(removed) <= 1000 else [first]

    @staticmethod
    def _scrub(db: sqlite3.Connection, pais: Iterable[str]) -> None:
        """After deleting: rewrite the pais' lexical indexes (FTS5 keeps a deleted row's terms in its older
        segments until they are merged), so forgotten words leave the file, not only the query results.
        Every FTS5 table named with the pai's tag is rewritten, however many the layout gives a pai."""
        for pai in set(pais):
            row = db.execute("SELECT tag FROM pais WHERE pai = ?", (pai,)).fetchone()
            if row is None:
                continue
            tables = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%fts5%'"
                " AND name LIKE '%' || ?", (row[0],),
            ).fetchall()  # fmt: skip
            for (name,) in tables:
                db.execute(f'INSERT INTO "{name}"("{name}") VALUES(\'optimize\')')

    def checkpoint(self) -> None:
        """Move the WAL into the database and truncate it (it would keep old copies of deleted pages)."""
        with self._write_lock:
            self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # bot.state.checkpoint

    def forget(self, pai: str, author_id: str | None = None, ids: Sequence[str] = ()) -> list[str]:
        """Delete the pai's records by author and/or id (either matches); returns the removed ids and leaves
        a tombstone for each so the vector index drops them too."""
        removed: list[str] = []
        with self._write_lock, self._db() as db:
            if author_id is not None:
                removed += self._delete(db, pai, "author_id = ?", (author_id,))
            for chunk in chunks(list(ids), 500):
                marks = ",".join("?" * len(chunk))
                removed += self._delete(db, pai, f"id IN ({marks})", tuple(chunk))
            if removed:
                self._scrub(db, [pai])
        if removed:
            self.checkpoint()
        return removed

    def remove(self, pai: str, seqs: Sequence[int]) -> list[str]:
        """Delete the pai's records with these sequence numbers (as ``forget``); returns their ids."""
        removed: list[str] = []
        with self._write_lock, self._db() as db:
            for chunk in chunks(list(seqs), 500):
                removed += self._delete(db, pai, f"seq IN ({','.join('?' * len(chunk))})", tuple(chunk))
            if removed:
                self._scrub(db, [pai])
        if removed:
            self.checkpoint()
        return removed

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (committed on leaving, rolled back on an exception), for changes that live
        beside the transcript, e.g. migrations."""
        with self._write_lock, self._db() as db:
            yield db

    def delete_where(self, db: sqlite3.Connection, pai: str, where: str, args: tuple) -> list[str]:
        """Inside ``transaction``: delete records as ``forget`` does (lexical rows, vector tombstones)."""
        return self._delete(db, pai, where, args)

    def select(self, sql: str, args: tuple = ()) -> list[tuple]:
        """A read on this thread's connection (for queries that live beside the transcript, e.g. erasures)."""
        return self._db().execute(sql, args).fetchall()

    def purge_before(self, cutoff: datetime, chat_key: str | None = None) -> list[tuple[str, str]]:
        """Retention: delete records sent before ``cutoff`` (of one chat, or all); returns ``(pai, id)``."""
        out: list[tuple[str, str]] = []
        with self._write_lock, self._db() as db:
            q, args = "SELECT DISTINCT pai FROM records WHERE ts < ?", (ts_of(cutoff),)
            if chat_key is not None:
                q, args = q + " AND chat_key = ?", (*args, chat_key)
            for (pai,) in db.execute(q, args).fetchall():
                where, wargs = ("ts < ?", (ts_of(cutoff),))
                if chat_key is not None:
                    where, wargs = "ts < ? AND chat_key = ?", (ts_of(cutoff), chat_key)
                out += [(pai, rid) for rid in self._delete(db, pai, where, wargs)]
            if out:
                self._scrub(db, {pai for pai, _ in out})
        if out:
            self.checkpoint()
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
            db.executemany("UPDATE records SET indexed = 1 WHERE seq = ? AND text = ? AND indexed = 0", checked)
            db.executemany("UPDATE records SET indexed = 1 WHERE seq = ? AND indexed = 0", plain)

    def mark_all_pending(self) -> None:
        with self._write_lock, self._db() as db:
            db.execute(f"UPDATE records SET indexed = 0 WHERE indexed != {NO_VECTOR}")

    def mark_pending(self, pai: str) -> None:
        with self._write_lock, self._db() as db:
            db.execute(f"UPDATE records SET indexed = 0 WHERE pai = ? AND indexed != {NO_VECTOR}", (pai,))

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

    def term_counts(self, pai: str, terms: Sequence[str], cap: int, evidence: bool = True) -> list[int]:
        """How many of the pai's records hold each term, counted up to ``cap + 1`` (so the cost of asking is
        bounded however common the term is). Used to plan which terms a lexical query can afford to rank."""
        db = self._db()
        table = self._table(db, pai, evidence)
        if table is None:
            return [0] * len(terms)
        known = self._counts(db)
        missing = [t for t in dict.fromkeys(terms) if (table, t, cap) not in known]
        if missing:
            if len(known) + len(missing) > COUNTS_KEPT:
                known.clear()
            counted = fts.term_counts(db, table, missing, cap)
            known.update(((table, t, cap), n) for t, n in zip(missing, counted))
        return [known[(table, t, cap)] for t in terms]

    def _counts(self, db: sqlite3.Connection) -> dict[tuple[str, str, int], int]:
        """This thread's term counts, kept while the database is unchanged: common terms recur in query after
        query, and counting one costs as much as reading ``cap`` postings. Any commit (of another connection:
        ``data_version``; of this one: ``total_changes``) drops them."""
        # read to the end: an unfinished statement would hold up this connection's commits (bot.state.checkpoint)
        version = (db.execute("PRAGMA data_version").fetchall()[0][0], db.total_changes)
        if getattr(self._local, "counts_version", None) != version:
            self._local.counts = {}
            self._local.counts_version = version
        counts: dict[tuple[str, str, int], int] = self._local.counts
        return counts

    def lexical(self, pai: str, match: str, limit: int, filters: SearchFilters | None,
                weights: tuple[float, ...] = fts.Weights().evidence(), min_seq: int = 0,
                evidence: bool = True) -> list[tuple[int, float]]:  # fmt: skip
        """BM25 over one of the pai's FTS tables: ``(seq, score)`` best first, scores positive (higher =
        better). ``min_seq`` confines ranking to records from that sequence number on (FTS5 skips the older
        postings; the scores keep the whole table's statistics)."""
        db = self._db()
        table = self._table(db, pai, evidence)
        if table is None or not match:
            return []
        where, args = filter_sql(filters)
        marks = ",".join("?" * len(weights))
        if not where:
            # the FTS table is the pai's own: without filters no join is needed
            rows = db.execute(
                f"SELECT rowid, bm25({table}, {marks}) AS s FROM {table} WHERE {table} MATCH ? AND rowid >= ?"
                " ORDER BY s LIMIT ?",
                (*weights, match, min_seq, limit),
            ).fetchall()
            return [(int(seq), -float(s)) for seq, s in rows]
        rows = db.execute(
            f"SELECT f.rowid, bm25({table}, {marks}) AS s FROM {table} f JOIN records r ON r.seq = f.rowid"
            f" WHERE {table} MATCH ? AND f.rowid >= ? AND +r.pai = ?{where} ORDER BY s LIMIT ?",
            (*weights, match, min_seq, pai, *args, limit),
        ).fetchall()
        return [(int(seq), -float(s)) for seq, s in rows]

    def window_start(self, pai: str, match: str, rows: int, filters: SearchFilters | None,
                     evidence: bool = True) -> int:  # fmt: skip
        """The sequence number from which on the pai holds the ``rows`` most recent records matching
        ``match`` (0 when it holds fewer). Streams postings newest first without ranking them: cheap."""
        db = self._db()
        table = self._table(db, pai, evidence)
        if table is None or not match or rows <= 0:
            return 0
        where, args = filter_sql(filters)
        if not where:
            row = db.execute(
                f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                (match, rows - 1),
            ).fetchone()
        else:
            row = db.execute(
                f"SELECT f.rowid FROM {table} f JOIN records r ON r.seq = f.rowid WHERE {table} MATCH ?"
                f" AND +r.pai = ?{where} ORDER BY f.rowid DESC LIMIT 1 OFFSET ?",
                (match, pai, *args, rows - 1),
            ).fetchone()
        return int(row[0]) if row else 0

    def matched_terms(self, pai: str, seqs: Sequence[int], terms: Sequence[str], evidence: bool = True,
                      columns: tuple[str, ...] = fts.OWN_COLUMNS) -> dict[int, set[str]]:  # fmt: skip
        """Which of ``terms`` each of the pai's records ``seqs`` holds (in ``columns`` of its FTS row)."""
        db = self._db()
        table = self._table(db, pai, evidence)
        if table is None:
            return {s: set() for s in seqs}
        return fts.matched_terms(db, table, list(seqs), terms, columns if evidence else ("author", "body"))

    def size(self, pai: str) -> int:
        """How many records the pai holds."""
        return int(self._db().execute("SELECT count(*) FROM records WHERE pai = ?", (pai,)).fetchone()[0])

    def by_seqs(self, pai: str, seqs: Sequence[int]) -> dict[int, Row]:
        """Full rows (text, metadata) of the pai's records with these sequence numbers."""
        out: dict[int, Row] = {}
        for chunk in chunks(list(seqs), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT {COLS} FROM records WHERE +pai = ? AND seq IN ({marks})", (pai, *chunk)
            ):
                row = to_row(r)
                out[row.seq] = row
        return out

    def metas(self, pai: str, seqs: Sequence[int]) -> dict[int, Meta]:
        """What ranking needs of the pai's records with these sequence numbers (no text, no JSON)."""
        out: dict[int, Meta] = {}
        for chunk in chunks(list(seqs), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT {META_COLS} FROM records WHERE +pai = ? AND seq IN ({marks})", (pai, *chunk)
            ):
                out[r[0]] = Meta(*r[:6], bool(r[6]))
        return out

    def metas_by_ids(self, pai: str, ids: Sequence[str], filters: SearchFilters | None = None) -> dict[str, Meta]:
        """``metas`` keyed by record id, for the pai's records with these ids that pass the filters."""
        where, args = filter_sql(filters, alias="")
        out: dict[str, Meta] = {}
        for chunk in chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._db().execute(
                f"SELECT id, {META_COLS} FROM records WHERE pai = ? AND id IN ({marks}){where}",
                (pai, *chunk, *args),
            ):
                out[r[0]] = Meta(*r[1:7], bool(r[7]))
        return out

    def neighbour_seqs(self, pai: str, chat_key: str, seq: int, width: int,
                       kinds: Sequence[str] = ()) -> list[int]:  # fmt: skip
        """Sequence numbers of up to ``width`` records (of ``kinds``, if given) on each side of record ``seq``
        in the same chat (arrival order)."""
        db = self._db()
        k = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        q = f"SELECT seq FROM records WHERE pai = ? AND chat_key = ? AND seq {{op}} ?{k} ORDER BY seq {{d}} LIMIT ?"
        args = (pai, chat_key, seq, *kinds, width)
        before = db.execute(q.format(op="<", d="DESC"), args).fetchall()
        after = db.execute(q.format(op=">", d="ASC"), args).fetchall()
        return [int(r[0]) for r in (*before, *after)]

    def timed(self, pai: str, seqs: Sequence[int]) -> set[int]:
        """Which of the pai's records ``seqs`` say a time ("yesterday", "last May", "in 2022")."""
        out: set[int] = set()
        for chunk in chunks(list(seqs), 500):
            marks = ",".join("?" * len(chunk))
            for seq, text in self._db().execute(f"SELECT seq, text FROM records WHERE +pai = ? AND seq IN ({marks})",
                                                (pai, *chunk)):  # fmt: skip
                if says_time(text):
                    out.add(int(seq))
        return out

    def next_seq(self, pai: str, chat_key: str, seq: int, kinds: Sequence[str]) -> int | None:
        """The next record of ``kinds`` after ``seq`` in the same chat."""
        marks = ",".join("?" * len(kinds))
        row = self._db().execute(
            f"SELECT seq FROM records WHERE pai = ? AND chat_key = ? AND seq > ? AND kind IN ({marks})"
            " ORDER BY seq LIMIT 1", (pai, chat_key, seq, *kinds),
        ).fetchone()  # fmt: skip
        return int(row[0]) if row else None

    def recent(self, pai: str, n: int, before: datetime | None = None) -> list[MemoryRecord]:
        where, args = ("", ()) if before is None else (" AND ts < ?", (ts_of(before),))
        rows = self._db().execute(
            f"SELECT {COLS} FROM records WHERE pai = ?{where} ORDER BY ts DESC, seq DESC LIMIT ?",
            (pai, *args, n),
        ).fetchall()
        return [to_row(r).record for r in reversed(rows)]

    def author_names(self, pai: str) -> dict[str, str]:
        """Normalised display name -> author id, for spotting members named in a query."""
        rows = self._db().execute(
            "SELECT author_name, author_id FROM records WHERE pai = ? GROUP BY author_id, author_name", (pai,)
        )
        return {name.casefold(): aid for name, aid in rows if name}

    def bot_ids(self, pai: str) -> set[str]:
        """Author ids under which the bot's own messages are stored in the pai."""
        rows = self._db().execute("SELECT DISTINCT author_id FROM records WHERE pai = ? AND kind = 'bot'", (pai,))
        return {r[0] for r in rows}

    def export(self, pai: str) -> Iterator[MemoryRecord]:
        cur = self._db().execute(f"SELECT {COLS} FROM records WHERE pai = ? ORDER BY ts, seq", (pai,))
        for r in cur:
            yield to_row(r).record

    def all_rows(self, after_seq: int, limit: int) -> list[Row]:
        rows = self._db().execute(
            f"SELECT {COLS} FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [to_row(r) for r in rows]

    def stats(self) -> list[dict[str, object]]:
        rows = self._db().execute(
            "SELECT pai, count(*), sum(indexed = 0), min(sent_at), max(sent_at), count(DISTINCT author_id)"
            " FROM records GROUP BY pai ORDER BY pai"
        ).fetchall()
        keys = ("pai", "records", "pending_index", "first", "last", "authors")
        return [dict(zip(keys, r)) for r in rows]

    def pais(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT pai FROM pais ORDER BY pai")]


def default_index_text(rec: MemoryRecord) -> tuple[str, str]:
    """What the lexical index holds for a record: (author terms, body terms)."""
    return index_terms(rec.author_name), index_terms(rec.text)


