"""Reading a data directory byte by byte: what is really on disk, whatever the code thinks it deleted.

``settle`` checkpoints every SQLite database into its main file (and truncates the WAL) and vacuums it, so
pages that only held deleted rows are gone; ``find`` then searches every byte of every file for markers.

A marker is searched as its UTF-8 bytes, lower-cased (full-text indexes keep terms lower-cased), as JSON's
``\\uXXXX`` escapes when it is not ASCII, and by its last 8 characters: an FTS5 index stores a term after
the prefix it shares with the previous term of its page, so only a tail of a marker may be there verbatim.
Markers should therefore be random (their tails unique), e.g. ``marker("text")``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"


def marker(what: str) -> str:
    """A unique word no text or index would hold by chance (lower-case letters and digits)."""
    return f"{what}{secrets.token_hex(6)}"


def databases(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")):
            with path.open("rb") as fh:
                if fh.read(16) == SQLITE_MAGIC:
                    out.append(path)
    return out


def settle(root: Path) -> list[Path]:
    """Checkpoint (TRUNCATE) and VACUUM every SQLite database under ``root``; returns them."""
    found = databases(root)
    for path in found:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    return found


def patterns(text: str) -> set[bytes]:
    out = {text.encode(), text.lower().encode()}
    if not text.isascii():
        out.add(json.dumps(text)[1:-1].encode())
    if len(text) > 8:
        out.add(text[-8:].encode())
        out.add(text[-8:].lower().encode())
    return out


def find(root: Path, markers: Iterable[str], also: Iterable[tuple[str, bytes]] = ()) -> list[tuple[str, str]]:
    """``(file relative to root, marker)`` for every marker whose bytes occur in a file under ``root`` (and
    in the named extra texts ``also``, e.g. captured logs)."""
    wanted = {m: patterns(m) for m in markers}
    hits: list[tuple[str, str]] = []
    sources: list[tuple[str, bytes]] = [
        (str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()
    ]
    for name, data in [*sources, *also]:
        for m, pats in wanted.items():
            if any(p in data for p in pats):
                hits.append((name, m))
    return hits
