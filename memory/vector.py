"""The dense index: chromadb collections, embedded (``PersistentClient``) or remote (``HttpClient``).

Where a pai's vectors live is decided by measurement (``bench/memory_scale.py --groups``): one resident
collection per group cost about 2.6 MB of RSS in embedded chromadb, so 1,000 small groups took gigabytes,
and bounding chromadb's own index cache left about 0.35 MB per collection. A shared collection with a group
filter costs almost nothing per group, but a filtered query grows with the size of the group it filters
(about 125 ms at 20,000 vectors of one group). So:

- a pai's vectors start in the **shared** collection ``shared-<embedding>``, each with the metadata
  ``{"p": <pai tag>}`` and the chroma id ``<pai tag>:<record id>``;
- once a pai holds ``OWN_AT`` vectors, they move to its **own** collection ``pai-<tag>-<embedding>`` (ids are
  the record ids there), where a query needs no filter.

The group filter is applied in exactly one function, ``ChromaIndex._scope``: every read and write of a pai's
vectors goes through the scope it returns (a collection and, for the shared one, the ``where`` filter and id
prefix). The isolation property tests cover both places. The store re-resolves every hit through the
transcript by ``(pai, id)`` as well. Collection names are only ``[a-z0-9-]``, at most 63 characters, and a
new embedding model gets fresh collections instead of mixing incomparable vectors.

Collections hold vectors (and, in the shared one, the pai tag) only: search filters (author, time, kind) are
applied by the transcript, which is the source of truth for them anyway.

Every method blocks (chromadb is synchronous); callers run them on worker threads. chromadb exceptions are
translated to ``bot.errors.MemoryError_``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from bot.errors import MemoryError_
from memory.transcript import pai_tag

log = logging.getLogger("paibot.memory")

_SAFE = re.compile(r"[^a-z0-9-]")


def shared_name(fingerprint: str) -> str:
    """The collection small pais share (per embedding)."""
    fp = _SAFE.sub("-", fingerprint.lower())[:24].strip("-") or "x"
    return f"shared-{fp}"


def collection_name(pai: str, fingerprint: str) -> str:
    """The chromadb collection of a pai: always a valid chromadb name (3-63 chars of ``[a-z0-9-]``)."""
    fp = _SAFE.sub("-", fingerprint.lower())[:24].strip("-") or "x"
    return f"pai-{pai_tag(pai)}-{fp}"


def connect_embedded(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from memory.heap import wipe_recycled_memory

    wipe_recycled_memory()  # its index files would otherwise carry freed memory (memory.heap)

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


OWN_AT = 2000  # vectors from which a pai gets its own collection
_SPACE = {"hnsw:space": "cosine", "hnsw:search_ef": 200}  # near-exact neighbours for ~100 candidates


@dataclass(frozen=True)
class Scope:
    """Where one pai's vectors are: a collection, and for the shared one its filter and id prefix."""

    col: Any
    where: dict[str, str] | None = None
    prefix: str = ""

    def cid(self, rid: str) -> str:
        return self.prefix + rid

    def rid(self, cid: str) -> str:
        return cid[len(self.prefix) :]


class ChromaIndex:
    """One vector per transcript evidence record: small pais share a collection (filtered by pai), large pais
    have their own (see the module docstring)."""

    def __init__(self, client: Any, fingerprint: str, own_at: int = OWN_AT) -> None:
        self._client = client
        self.fingerprint = fingerprint
        self.own_at = own_at
        self._shared: Any = None
        self._own: dict[str, Any] = {}  # pais known to have their own collection
        self._not_own: set[str] = set()  # pais known not to
        self._shared_counts: dict[str, int] = {}  # vectors a pai has in the shared collection (at least)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ scopes

    def _shared_col(self) -> Any:
        if self._shared is None:
            name = shared_name(self.fingerprint)
            try:
                self._shared = self._client.get_or_create_collection(name, metadata=dict(_SPACE),
                                                                      embedding_function=None)  # fmt: skip
            except Exception as exc:
                raise MemoryError_(f"chroma collection {name}: {type(exc).__name__}: {exc}") from exc
        return self._shared

    def _own_col(self, pai: str, create: bool) -> Any:
        col = self._own.get(pai)
        if col is not None or (pai in self._not_own and not create):
            return col
        name = collection_name(pai, self.fingerprint)
        try:
            col = (self._client.get_or_create_collection(name, metadata=dict(_SPACE), embedding_function=None)
                   if create else self._client.get_collection(name, embedding_function=None))  # fmt: skip
        except Exception as exc:
            if not create:
                self._not_own.add(pai)
                return None
            raise MemoryError_(f"chroma collection {name}: {type(exc).__name__}: {exc}") from exc
        self._own[pai] = col
        self._not_own.discard(pai)
        return col

    def _scope(self, pai: str) -> Scope:
        """The one place that says where a pai's vectors are, and so the one place the group filter is set."""
        with self._lock:
            own = self._own_col(pai, create=False)
            if own is not None:
                return Scope(own)
            tag = pai_tag(pai)
            return Scope(self._shared_col(), {"p": tag}, f"{tag}:")

    def _shared_ids(self, scope: Scope) -> list[str]:
        got = scope.col.get(where=scope.where, include=[])
        return list(got["ids"])

    # ------------------------------------------------------------------ writes

    def upsert(self, pai: str, ids: Sequence[str], vectors: Sequence[Sequence[float]] | np.ndarray) -> None:
        """Write vectors: a float32 array (chromadb's native form; lists of floats cost it a conversion per
        element) and, in the shared collection, the pai tag as the only metadata."""
        self.upsert_many([(pai, ids, vectors)])

    def upsert_many(
        self, batches: Sequence[tuple[str, Sequence[str], Sequence[Sequence[float]] | np.ndarray]]
    ) -> None:
        """``upsert`` for several pais at once: the vectors of all pais in the shared collection go in one
        chromadb write (it pays a fixed cost per write, and holds the interpreter while it writes, so live
        messages spread over many small groups would otherwise cost a write each)."""
        shared: list[tuple[str, Scope, list[str], np.ndarray]] = []
        for pai, ids, vectors in batches:
            if not ids:
                continue
            embeddings = np.asarray(vectors, dtype=np.float32)
            try:
                scope = self._scope(pai)
                if scope.where is None:
                    scope.col.upsert(ids=list(ids), embeddings=embeddings)
                else:
                    shared.append((pai, scope, list(ids), embeddings))
            except Exception as exc:
                self.forget_handle(pai)
                raise MemoryError_(f"chroma upsert failed: {type(exc).__name__}: {exc}") from exc
        if not shared:
            return
        try:
            shared[0][1].col.upsert(
                ids=[scope.cid(i) for _, scope, ids, _ in shared for i in ids],
                embeddings=np.concatenate([e for *_, e in shared]),
                metadatas=[dict(scope.where or {}) for _, scope, ids, _ in shared for _ in ids],
            )  # fmt: skip
            for pai, scope, ids, _ in shared:
                self._count_shared(pai, scope, len(ids))
        except MemoryError_:
            raise
        except Exception as exc:
            for pai, *_ in shared:
                self.forget_handle(pai)
            raise MemoryError_(f"chroma upsert failed: {type(exc).__name__}: {exc}") from exc

    def _count_shared(self, pai: str, scope: Scope, added: int) -> None:
        """Count a pai's vectors in the shared collection; move them to its own collection at ``own_at``."""
        have = self._shared_counts.get(pai)
        have = len(self._shared_ids(scope)) if have is None else have + added  # overwrites overcount
        self._shared_counts[pai] = have
        if have >= self.own_at:
            if len(self._shared_ids(scope)) >= self.own_at:
                self._promote(pai, scope)
            self._shared_counts.pop(pai, None)

    def _promote(self, pai: str, shared: Scope) -> None:
        """Move a pai's vectors from the shared collection to its own (copied first, then removed)."""
        got = shared.col.get(where=shared.where, include=["embeddings"])
        with self._lock:
            own = self._own_col(pai, create=True)
        ids = [shared.rid(c) for c in got["ids"]]
        vectors = np.asarray(got["embeddings"], dtype=np.float32)
        for i in range(0, len(ids), 5000):
            own.upsert(ids=ids[i : i + 5000], embeddings=vectors[i : i + 5000])
        shared.col.delete(where=shared.where)

    def query(self, pai: str, vector: Sequence[float] | np.ndarray, n: int) -> list[tuple[str, float]]:
        """Nearest record ids with cosine *similarity* (higher = closer), best first."""
        try:
            scope = self._scope(pai)
            res = scope.col.query(
                query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1), n_results=n,
                where=scope.where, include=["distances"],
            )  # fmt: skip
        except Exception as exc:
            self.forget_handle(pai)
            raise MemoryError_(f"chroma query failed: {type(exc).__name__}: {exc}") from exc
        ids = res["ids"][0] if res["ids"] else []
        dists = res["distances"][0] if res.get("distances") else [1.0] * len(ids)
        return [(scope.rid(i), 1.0 - float(d)) for i, d in zip(ids, dists)]

    def delete(self, pai: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            scope = self._scope(pai)
            scope.col.delete(ids=[scope.cid(i) for i in ids])
        except Exception as exc:
            self.forget_handle(pai)
            raise MemoryError_(f"chroma delete failed: {type(exc).__name__}: {exc}") from exc

    def count(self, pai: str) -> int:
        try:
            scope = self._scope(pai)
            return int(scope.col.count()) if scope.where is None else len(self._shared_ids(scope))
        except Exception as exc:
            raise MemoryError_(f"chroma count failed: {type(exc).__name__}: {exc}") from exc

    def ids(self, pai: str) -> list[str]:
        """Every record id with a vector of the pai (operator checks and tests; reads them all)."""
        try:
            scope = self._scope(pai)
            return [scope.rid(i) for i in scope.col.get(where=scope.where, include=[])["ids"]]
        except Exception as exc:
            raise MemoryError_(f"chroma get failed: {type(exc).__name__}: {exc}") from exc

    def drop(self, pai: str) -> None:
        """Delete the pai's vectors wherever they are (a rebuild starts from nothing)."""
        name = collection_name(pai, self.fingerprint)
        try:
            self._client.delete_collection(name)
        except Exception as exc:  # a missing collection is what we wanted anyway
            log.debug("dropping %s: %s", name, exc)
        self.forget_handle(pai)
        try:
            shared = self._scope(pai)
            shared.col.delete(where=shared.where)
        except Exception as exc:
            log.debug("dropping a pai's shared vectors: %s", exc)

    def forget_handle(self, pai: str) -> None:
        with self._lock:
            self._own.pop(pai, None)
            self._not_own.discard(pai)
            self._shared_counts.pop(pai, None)

    def close(self) -> None:
        """Release the client (an embedded client frees its directory for the next open in this process)."""
        with self._lock:
            self._own.clear()
            self._not_own.clear()
            self._shared_counts.clear()
            self._shared = None
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
