"""The lexical index of a pai: two FTS5 tables inside the transcript database, written in its transactions.

* ``fts_<tag>`` holds the evidence (statements, file chunks, image captions) in four columns: ``author``,
  ``body`` (the record's own text), ``prev`` (the text of the statement before it in the same chat) and
  ``far`` (the distinct terms of the six statements before that). A turn that does not name its subject
  ("40元", "the Wolves are solid") is found through the turns that did: on conversational sets this decides
  (see ``bench/locomo.py``). BM25 weighs the columns (``Weights``); FTS5 adds the weighted term frequencies of
  the columns before saturating them, so context can lift a turn but never outweighs its own words.
* ``fto_<tag>`` holds everything else (questions to the bot, commands, the bot's own messages) in ``author``
  and ``body``. Kept apart, they neither take candidate slots from evidence nor change its term statistics.

Only statements and captions are context, and only they get context (a long document's chunks would
otherwise fill every following turn's context). The context is computed when a record is written; when a
record is removed (forget, retention) the rows whose context held its words are written again, so forgotten
words leave the index entirely. An edited record's text reaches its own row; the context of the turns after
it keeps the words they were written next to.

All functions take an open connection; the transcript serialises writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.ports import CAPTION, EVIDENCE_KINDS, STATEMENT, MemoryRecord
from memory.textnorm import fts_match, fts_phrase

FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"
CONTEXT_KINDS = (STATEMENT, CAPTION)  # what is context, and what gets context
FAR = 5  # statements before the previous one whose terms make the ``far`` column
EVIDENCE_COLUMNS = ("author", "body", "prev", "far")
OTHER_COLUMNS = ("author", "body")
OWN_COLUMNS = ("author", "body", "prev")  # what a record is judged relevant on (see memory.retrieval)

IndexText = Callable[[MemoryRecord], tuple[str, str]]
"""Turns a record into the (author, body) terms its FTS row indexes."""


@dataclass(frozen=True)
class Weights:
    """BM25 column weights of the evidence table (chosen on the dev splits, see bench/locomo.py)."""

    author: float = 0.6
    body: float = 1.0
    prev: float = 0.5
    far: float = 0.3

    def evidence(self) -> tuple[float, ...]:
        return (self.author, self.body, self.prev, self.far)

    def other(self) -> tuple[float, ...]:
        return (self.author, self.body)


def evidence_table(tag: str) -> str:
    return f'"fts_{tag}"'


def other_table(tag: str) -> str:
    return f'"fto_{tag}"'


def create_tables(db: sqlite3.Connection, tag: str) -> None:
    cols = ", ".join(EVIDENCE_COLUMNS)
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {evidence_table(tag)} USING fts5({cols}, tokenize='{FTS_TOKENIZER}')")
    cols = ", ".join(OTHER_COLUMNS)
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {other_table(tag)} USING fts5({cols}, tokenize='{FTS_TOKENIZER}')")


def drop_tables(db: sqlite3.Connection, tag: str) -> None:
    db.execute(f"DROP TABLE IF EXISTS {evidence_table(tag)}")
    db.execute(f"DROP TABLE IF EXISTS {other_table(tag)}")


def is_evidence(kind: str) -> bool:
    return kind in EVIDENCE_KINDS


def table_of(tag: str, kind: str) -> str:
    return evidence_table(tag) if is_evidence(kind) else other_table(tag)


def context_bodies(db: sqlite3.Connection, tag: str, pai: str, chat: str, seq: int,
                   known: dict[int, str] | None = None) -> list[str]:  # fmt: skip
    """Body terms of up to ``FAR + 1`` context turns before ``seq`` in the chat, newest first (from ``known``
    for rows being written in this batch, else from their FTS rows)."""
    marks = ",".join("?" * len(CONTEXT_KINDS))
    seqs = [r[0] for r in db.execute(
        f"SELECT seq FROM records WHERE pai = ? AND chat_key = ? AND seq < ? AND kind IN ({marks})"
        " ORDER BY seq DESC LIMIT ?", (pai, chat, seq, *CONTEXT_KINDS, FAR + 1),
    )]  # fmt: skip
    known = known or {}
    missing = [s for s in seqs if s not in known]
    stored: dict[int, str] = {}
    if missing:
        table = evidence_table(tag)
        stored = dict(db.execute(f"SELECT rowid, body FROM {table} WHERE rowid IN ({','.join('?' * len(missing))})",
                                 missing))  # fmt: skip
    return [known.get(s, stored.get(s, "")) for s in seqs]


def context_columns(turns: Sequence[str]) -> tuple[str, str]:
    """``(prev, far)`` from the context turns (newest first): the previous turn as it is, and the distinct
    terms of the ones before it (a long stretch should add topics, not repeat them)."""
    if not turns:
        return "", ""
    seen: set[str] = set()
    far: list[str] = []
    for body in turns[1:]:
        for term in body.split():
            if term not in seen:
                seen.add(term)
                far.append(term)
    return turns[0], " ".join(far)


def write_rows(db: sqlite3.Connection, tag: str, pai: str, rows: Sequence[tuple[int, MemoryRecord]],
               index_text: IndexText) -> None:  # fmt: skip
    """Write the FTS rows of records already in ``records`` (new or edited), each with its context."""
    terms = {seq: index_text(rec) for seq, rec in rows}
    bodies = {seq: body for seq, (_, body) in terms.items()}
    evidence: list[tuple[int, str, str, str, str]] = []
    other: list[tuple[int, str, str]] = []
    for seq, rec in rows:
        author, body = terms[seq]
        if not is_evidence(rec.kind):
            other.append((seq, author, body))
            continue
        prev, far = ("", "")
        if rec.kind in CONTEXT_KINDS:
            prev, far = context_columns(context_bodies(db, tag, pai, rec.chat_key, seq, bodies))
        evidence.append((seq, author, body, prev, far))
    if evidence:
        db.executemany(f"INSERT INTO {evidence_table(tag)}(rowid, author, body, prev, far) VALUES (?,?,?,?,?)", evidence)
    if other:
        db.executemany(f"INSERT INTO {other_table(tag)}(rowid, author, body) VALUES (?,?,?)", other)


def delete_row(db: sqlite3.Connection, tag: str, seq: int, kind: str) -> None:
    db.execute(f"DELETE FROM {table_of(tag, kind)} WHERE rowid = ?", (seq,))


def refresh_context(db: sqlite3.Connection, tag: str, pai: str, chat: str, after_seq: int) -> None:
    """Recompute the context columns of the turns whose context reached back to ``after_seq`` (the next
    ``FAR + 1`` context turns of the chat), e.g. after the record there was removed."""
    marks = ",".join("?" * len(CONTEXT_KINDS))
    following = db.execute(
        f"SELECT seq FROM records WHERE pai = ? AND chat_key = ? AND seq > ? AND kind IN ({marks})"
        " ORDER BY seq LIMIT ?", (pai, chat, after_seq, *CONTEXT_KINDS, FAR + 1),
    ).fetchall()  # fmt: skip
    table = evidence_table(tag)
    for (seq,) in following:
        prev, far = context_columns(context_bodies(db, tag, pai, chat, seq))
        db.execute(f"UPDATE {table} SET prev = ?, far = ? WHERE rowid = ?", (prev, far, seq))


# ---------------------------------------------------------------------- queries


def term_counts(db: sqlite3.Connection, table: str, terms: Sequence[str], cap: int) -> list[int]:
    """How many rows hold each term in their own text (author or body), counted up to ``cap + 1``."""
    q = f"SELECT count(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?)"
    return [int(db.execute(q, (fts_match([t], ("author", "body")), cap + 1)).fetchone()[0]) for t in terms]


def matched_terms(db: sqlite3.Connection, table: str, seqs: Sequence[int], terms: Sequence[str],
                  columns: tuple[str, ...]) -> dict[int, set[str]]:  # fmt: skip
    """Which of ``terms`` each of the rows ``seqs`` holds in ``columns`` (the index's own tokenizer decides)."""
    out: dict[int, set[str]] = {s: set() for s in seqs}
    if not seqs:
        return out
    marks = ",".join("?" * len(seqs))
    for t in terms:
        for (seq,) in db.execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH ? AND rowid IN ({marks})", (fts_match([t], columns), *seqs)
        ):
            out[int(seq)].add(t)
    return out


__all__ = [
    "EVIDENCE_COLUMNS", "FTS_TOKENIZER", "OWN_COLUMNS", "IndexText", "Weights", "create_tables", "delete_row",
    "drop_tables", "evidence_table", "fts_phrase", "is_evidence", "matched_terms", "other_table",
    "refresh_context", "table_of", "term_counts", "write_rows",
]  # fmt: skip
