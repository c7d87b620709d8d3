"""The dense index: one chromadb collection per pai, embedded (``PersistentClient``) or remote (``HttpClient``).

A collection is named ``pai-<sha256(pai)[:32]>-<embedding fingerprint>``: only ``[a-z0-9-]``, at most 63
characters, whatever the pai key holds, and a new embedding model gets a fresh collection instead of mixing
incomparable vectors. There is never a shared collection filtered by ``where``: a forgotten filter cannot
leak another group. The store re-resolves every hit through the transcript by ``(pai, id)`` as well.

Collections hold vectors only, no metadata: search filters (author, time, kind) are applied by the
transcript, which is the source of truth for them anyway.

Every method blocks (chromadb is synchronous); callers run them on worker threads. chromadb exceptions are
translated to ``bot.errors.MemoryError_``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from bot.errors import MemoryError_
from memory.transcript import pai_tag

log = logging.getLogger("paibot.memory")

_SAFE = re.compile(r"[^a-z0-9-]")


def collection_name(pai: str, fingerprint: str) -> str:
    """The chromadb collection of a pai: always a valid chromadb name (3-63 chars of ``[a-z0-9-]``)."""
    fp = _SAFE.sub("-", fingerprint.lower())[:24].strip("-") or "x"
    return f"pai-{pai_tag(pai)}-{fp}"


def connect_embedded(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    try:
        return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
    except Exception as exc:  # chromadb raises many types for a broken directory
        raise MemoryError_(f"cannot open the chroma index at {path}: {type(exc).__name__}: {exc}") from exc


def forget_cached_system(path: Path) -> None:
    """Drop chromadb's in-process cache entry for an embedded directory. A client that failed to open a
    damaged directory leaves a broken shared "system" behind under that path, and every later client for the
    same path would reuse it; chromadb has no public call for this (``clear_system_cache`` drops every
    directory's entry)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)


def connect_http(url: str) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    u = urlparse(url if "://" in url else f"http://{url}")
    ssl = u.scheme == "https"
    try:
        return chromadb.HttpClient(
            host=u.hostname or "127.0.0.1", port=u.port or (443 if ssl else 8000), ssl=ssl,
            settings=ChromaSettings(anonymized_telemetry=False),
        )  # fmt: skip
    except Exception as exc:
        raise MemoryError_(f"cannot reach the chroma server at {url}: {type(exc).__name__}: {exc}") from exc


class ChromaIndex:
    """Per-pai chromadb collections holding one vector per transcript record (chroma id = record id)."""

    def __init__(self, client: Any, fingerprint: str) -> None:
        self._client = client
        self.fingerprint = fingerprint
        self._cols: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _col(self, pai: str, create: bool = True) -> Any:
        with self._lock:
            col = self._cols.get(pai)
            if col is not None:
                return col
            name = collection_name(pai, self.fingerprint)
            try:
                if create:
                    # search_ef 200 (default 10, raised to k by hnswlib): near-exact neighbours for the
                    # ~100 candidates retrieval asks for, for well under a millisecond at 100k vectors
                    col = self._client.get_or_create_collection(
                        name, metadata={"hnsw:space": "cosine", "hnsw:search_ef": 200}, embedding_function=None
                    )
                else:
                    col = self._client.get_collection(name, embedding_function=None)
            except Exception as exc:
                if not create:
                    return None
                raise MemoryError_(f"chroma collection {name}: {type(exc).__name__}: {exc}") from exc
            self._cols[pai] = col
            return col

    def upsert(self, pai: str, ids: Sequence[str], vectors: Sequence[Sequence[float]] | np.ndarray) -> None:
        """Write vectors only: a float32 array (chromadb's native form; lists of floats cost it a conversion
        per element) and no metadata (each metadata key is a row chromadb writes per record; filters are
        the transcript's job)."""
        if not ids:
            return
        embeddings = np.asarray(vectors, dtype=np.float32)
        try:
            self._col(pai).upsert(ids=list(ids), embeddings=embeddings)
        except MemoryError_:
            raise
        except Exception as exc:
            self.forget_handle(pai)
            raise MemoryError_(f"chroma upsert failed: {type(exc).__name__}: {exc}") from exc

    def query(self, pai: str, vector: Sequence[float] | np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest record ids with cosine *similarity* (higher = closer), best first."""
        col = self._col(pai, create=False)
        if col is None:
            return []
        try:
            res = col.query(
                query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1), n_results=n,
                include=["distances"],
            )  # fmt: skip
        except Exception as exc:
            self.forget_handle(pai)
            raise MemoryError_(f"chroma query failed: {type(exc).__name__}: {exc}") from exc
        ids = res["ids"][0] if res["ids"] else []
        dists = res["distances"][0] if res.get("distances") else [1.0] * len(ids)
        return [(i, 1.0 - float(d)) for i, d in zip(ids, dists)]

    def delete(self, pai: str, ids: Sequence[str]) -> None:
        col = self._col(pai, create=False)
        if col is None or not ids:
            return
        try:
            col.delete(ids=list(ids))
        except Exception as exc:
            self.forget_handle(pai)
            raise MemoryError_(f"chroma delete failed: {type(exc).__name__}: {exc}") from exc

    def count(self, pai: str) -> int:
        col = self._col(pai, create=False)
        try:
            return int(col.count()) if col is not None else 0
        except Exception as exc:
            raise MemoryError_(f"chroma count failed: {type(exc).__name__}: {exc}") from exc

    def ids(self, pai: str) -> list[str]:
        """Every record id with a vector in the pai's collection (operator checks and tests; reads them all)."""
        col = self._col(pai, create=False)
        try:
            return list(col.get(include=[])["ids"]) if col is not None else []
        except Exception as exc:
            raise MemoryError_(f"chroma get failed: {type(exc).__name__}: {exc}") from exc

    def drop(self, pai: str) -> None:
        """Delete the pai's collection (a rebuild starts from nothing)."""
        self.forget_handle(pai)
        name = collection_name(pai, self.fingerprint)
        try:
            self._client.delete_collection(name)
        except Exception as exc:  # a missing collection is what we wanted anyway
            log.debug("dropping %s: %s", name, exc)

    def forget_handle(self, pai: str) -> None:
        with self._lock:
            self._cols.pop(pai, None)

    def close(self) -> None:
        """Release the client (an embedded client frees its directory for the next open in this process)."""
        with self._lock:
            self._cols.clear()
        close = getattr(self._client, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing twice or a server gone away: nothing left to release
                log.debug("closing chroma: %s", exc)

    def heartbeat(self) -> None:
        try:
            self._client.heartbeat()
        except Exception as exc:
            raise MemoryError_(f"chroma is not answering: {type(exc).__name__}: {exc}") from exc
