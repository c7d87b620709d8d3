"""``HybridMemoryStore``: the per-pai memory the core talks to through ``bot.ports.MemoryStore``.

Write path: ``record`` commits the record (and its FTS row, and its "not yet in the vector index" mark) to the
SQLite transcript on the database thread and returns; it never waits for embeddings or chromadb. A named
background task, ``paibot-memory-indexer``, embeds pending records in batches on the index thread and
writes them to the pai's chroma collection; deletions travel the same way as durable tombstones. After a
crash the marks are still there and the indexer finishes the job at the next start. A chroma directory that
is missing or cannot be opened is rebuilt from the transcript.

Read path: ``search`` runs the hybrid retriever (``memory.retrieval``) on a search thread. If the dense side
fails (embedding server down, chroma unreachable) search degrades to lexical results and logs why.

Thread layout: one database-writer thread, one index thread, a few search threads; SQLite readers use their
own connections (WAL). Nothing blocking runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bot.errors import MemoryError_
from bot.ports import BOT, Erasure, MemoryHit, MemoryRecord, SearchFilters
from memory import erasure as memory_erasure
from memory.config import LitellmLoader, MemoryConfig
from memory.embedding import Embedder, make_embedder
from memory.kinds import KindRules
from memory.migrations import migrate
from memory.retrieval import HybridRetriever, RetrievalParams
from memory.transcript import Pending, Transcript, default_index_text
from memory.vector import ChromaIndex, connect_embedded, connect_http, forget_cached_system

log = logging.getLogger("paibot.memory")
T = TypeVar("T")

INDEX_BATCH = 5000  # chromadb pays a fixed cost per write call: bulk indexing goes in large batches
# Live messages arrive one by one; the indexer waits this long after the first one so that one chromadb write
# takes all that arrived meanwhile (one write per message spent about half the CPU on chromadb's fixed cost).
INDEX_DELAY_S = 0.5
RETENTION_EVERY_S = 3600.0
DENSE_OVERFETCH = 4  # dense candidates fetched per wanted one when search filters apply


@dataclass(frozen=True)
class ImportResult:
    seen: int
    added: int
    updated: int = 0  # records it had already, changed (an edit by the same author)


index_text = default_index_text


def embed_text(rec: MemoryRecord | Pending) -> str:
    """What the vector of a record embeds: its author's name and its text."""
    return f"{rec.author_name}: {rec.text}" if rec.author_name else rec.text


class HybridMemoryStore:
    """Implements ``bot.ports.MemoryStore`` (record, search, recent, forget, close) and ``ContentEraser``
    (passages, erase), plus the operator methods the CLI uses (import_records, export, stats, reindex,
    flush, purge_expired)."""

    def __init__(self, transcript: Transcript, index: ChromaIndex, embedder: Embedder, *,
                 params: RetrievalParams | None = None, retention: Callable[[str], int] | None = None,
                 data_dir: Path | None = None, index_delay_s: float = INDEX_DELAY_S) -> None:  # fmt: skip
        self.transcript = transcript
        self.index_delay_s = index_delay_s
        self.index = index
        self.embedder = embedder
        self.data_dir = data_dir
        self._retention = retention
        self._db_exec = ThreadPoolExecutor(1, thread_name_prefix="paibot-memory-db")
        self._idx_exec = ThreadPoolExecutor(1, thread_name_prefix="paibot-memory-index")
        self._search_exec = ThreadPoolExecutor(4, thread_name_prefix="paibot-memory-search")
        self._authors: dict[str, dict[str, str]] = {}
        self._bots: dict[str, set[str]] = {}
        self.retriever = HybridRetriever(transcript, self._dense, params, authors=self._author_names,
                                         bot_ids=self._bot_ids)  # fmt: skip
        self.retriever.dense_floor = getattr(embedder, "floor", 0.0)
        self.retriever.dense_weight = getattr(embedder, "weight", 0.3)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._last_retention = 0.0
        self._queued: list[tuple[MemoryRecord, asyncio.Future[None]]] = []  # records waiting for a commit
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ plumbing

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise MemoryError_("the memory store is closed")
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def _kick(self) -> None:
        """Start the indexer on first use (it needs a running loop) and wake it."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._indexer(), name="paibot-memory-indexer")
        assert self._wake is not None
        self._wake.set()

    async def _indexer(self) -> None:
        failures = 0
        while not self._closed:
            assert self._wake is not None
            if failures:
                # After a failure the backoff always runs out: a record() waking the indexer must not turn
                # a failing index (a broken embedding, chroma down) into a hot retry loop.
                await asyncio.sleep(min(60.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0))
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=30.0)
                    if self.index_delay_s > 0:
                        await asyncio.sleep(self.index_delay_s)  # gather a batch (see INDEX_DELAY_S)
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._closed:
                return
            try:
                while not self._closed and await self._run(self._idx_exec, self._index_batch):
                    await asyncio.sleep(0)  # let a record() or search in between
                if self._retention and time.monotonic() - self._last_retention > RETENTION_EVERY_S:
                    self._last_retention = time.monotonic()
                    await self.purge_expired()
                failures = 0
            except MemoryError_ as exc:
                failures += 1
                log.warning("memory indexing failed (attempt %d), will retry: %s", failures, _short(exc))
            except Exception as exc:  # one bad batch must not end indexing for the process's lifetime
                if self._closed:
                    log.debug("indexer stopping: %s", _short(exc))
                    return
                failures += 1
                # The text of a chroma error can hold whole embedding vectors: log it cut short.
                log.error("unexpected memory indexing failure (attempt %d), will retry: %s: %s",
                          failures, type(exc).__name__, _short(exc))
                log.debug("indexing failure details", exc_info=True)

    def _index_batch(self) -> bool:
        """One batch of index work (deletions first). Returns whether more may be waiting."""
        stones = self.transcript.tombstones(INDEX_BATCH)
        by_pai: dict[str, list[str]] = {}
        for pai, rid in stones:
            by_pai.setdefault(pai, []).append(rid)
        for pai, ids in by_pai.items():
            self.index.delete(pai, ids)
        self.transcript.clear_tombstones(stones)
        rows = self.transcript.pending(INDEX_BATCH)
        if rows:
            vectors = np.asarray(self.embedder.embed([embed_text(r) for r in rows]), dtype=np.float32)
            groups: dict[str, list[int]] = {}
            for i, r in enumerate(rows):
                groups.setdefault(r.pai, []).append(i)
            # every group's vectors of this batch in one write (chromadb pays a fixed cost per write)
            self.index.upsert_many([(p, [rows[i].id for i in ix], vectors[ix]) for p, ix in groups.items()])
            self.transcript.mark_indexed([r.seq for r in rows], {r.seq: r.text for r in rows})
        return len(stones) == INDEX_BATCH or len(rows) == INDEX_BATCH

    def _dense(self, pai: str, query: str, n: int, filters: SearchFilters | None) -> list[tuple[str, float]]:
        """The pai's nearest vectors. With filters, more are fetched (the transcript drops those that fail
        them): a narrow filter leaves fewer dense candidates, while the lexical side applies it exactly."""
        try:
            vec = self.embedder.embed([query])[0]
            return self.index.query(pai, vec, n * DENSE_OVERFETCH if filters is not None else n)
        except Exception as exc:  # whatever the vector side does, a search still answers (lexically)
            log.warning("dense search unavailable, answering from the lexical index: %s", _short(exc))
            return []

    def _author_names(self, pai: str) -> dict[str, str]:
        names = self._authors.get(pai)
        if names is None:
            names = self._authors[pai] = self.transcript.author_names(pai)
        return names

    def _bot_ids(self, pai: str) -> set[str]:
        ids = self._bots.get(pai)
        if ids is None:
            ids = self._bots[pai] = self.transcript.bot_ids(pai)
        return ids

    def _remember_author(self, rec: MemoryRecord) -> None:
        names = self._authors.get(rec.pai)
        if names is not None and rec.author_name:
            names.setdefault(rec.author_name.casefold(), rec.author_id)
        bots = self._bots.get(rec.pai)
        if bots is not None and rec.kind == BOT:
            bots.add(rec.author_id)

    # ------------------------------------------------------------------ MemoryStore

    async def record(self, rec: MemoryRecord) -> None:
        """Durable when it returns (transcript committed, FULL sync); indexing follows in the background.

        Concurrent calls share commits: while one transaction is on disk, the records that arrive wait and
        then go in the next one together (one fsync for all of them), each call returning once its own
        record is committed."""
        if self._closed:
            raise MemoryError_("the memory store is closed")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((_aware_record(rec), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._commit_queued(), name="paibot-memory-writer")
        await asyncio.shield(done)

    async def _commit_queued(self) -> None:
        """Commit what ``record`` queued, all that waits in one transaction, until nothing waits. Runs as
        its own task: a caller cancelled while waiting cancels nobody else's commit."""
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                rows = await self._run(self._db_exec, self.transcript.insert, [r for r, _ in batch], index_text)
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for row in rows:
                self._remember_author(row.record)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            self._kick()

    async def search(self, pai: str, query: str, k: int = 8, filters: SearchFilters | None = None) -> list[MemoryHit]:
        if k <= 0 or not query.strip():
            return []
        self._kick()
        return await self._run(self._search_exec, self.retriever.search, pai, query, k, filters)

    async def recent(self, pai: str, n: int, before: datetime | None = None) -> list[MemoryRecord]:
        return await self._run(self._search_exec, self.transcript.recent, pai, n, before)

    async def forget(self, pai: str, *, author_id: str | None = None, ids: Sequence[str] = ()) -> int:
        """Removes from the transcript and lexical index at once, then from the vector index (a tombstone
        keeps retrying that part if chroma is unavailable). Search never returns a forgotten record."""
        removed = await self._run(self._db_exec, self.transcript.forget, pai, author_id, tuple(ids))
        self._authors.pop(pai, None)
        self._bots.pop(pai, None)
        try:
            await self.flush()
        except MemoryError_ as exc:
            log.warning("forgotten records stay queued for removal from the vector index: %s", exc)
        return len(removed)

    # ------------------------------------------------------------------ ContentEraser

    async def passages(self, erasure: Erasure) -> Sequence[str]:
        """The texts of the records ``erasure`` forgets (to find quotes of them elsewhere)."""
        return await self._run(self._db_exec, memory_erasure.passages, self.transcript, erasure)

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """Forget what ``erasure`` names (``memory.erasure``): the transcript and lexical index at once, the
        vectors through their tombstones (retried while chroma is unavailable)."""
        counts, removed = await self._run(self._db_exec, memory_erasure.erase, self.transcript, erasure)
        if removed:
            self._authors.pop(erasure.pai, None)
            try:
                await self.flush()
            except MemoryError_ as exc:
                log.warning("forgotten records stay queued for removal from the vector index: %s", exc)
        return counts

    async def close(self) -> None:
        if self._closed:
            return
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):  # records already queued are committed first
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=30)
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
            except TimeoutError:
                self._task.cancel()
        for pool in (self._idx_exec, self._search_exec, self._db_exec):
            await asyncio.to_thread(pool.shutdown, wait=True)
        await asyncio.to_thread(self.index.close)
        await asyncio.to_thread(self.transcript.close)

    # ------------------------------------------------------------------ operator API

    async def flush(self) -> None:
        """Wait until every pending index write and deletion is done."""
        while await self._run(self._idx_exec, self._index_batch):
            pass

    async def import_records(self, records: Iterable[MemoryRecord], batch: int = 500,
                             progress: Callable[[int, int], None] | None = None) -> ImportResult:  # fmt: skip
        """Import in committed batches; ``progress(seen, added)`` is called after each commit, so whatever it
        reports has reached disk. Idempotent: a re-import adds nothing. The indexer is woken once a full index
        batch is waiting (and at the end): chromadb writes cost least in large batches."""
        seen = added = updated = woken = 0
        source = iter(records)

        def take() -> list[MemoryRecord]:  # parsing reads files: keep it off the event loop
            return [_aware_record(r) for r in itertools.islice(source, batch)]

        while chunk := await asyncio.to_thread(take):
            seen += len(chunk)
            rows = await self._run(self._db_exec, self.transcript.insert, chunk, index_text)
            updated += sum(1 for r in rows if r.updated)
            added += sum(1 for r in rows if not r.updated)
            for r in rows:
                self._remember_author(r.record)
            if added + updated - woken >= INDEX_BATCH:
                woken = added + updated
                self._kick()
            if progress:
                progress(seen, added)
        if added + updated > woken:
            self._kick()
        return ImportResult(seen, added, updated)

    async def export(self, pai: str) -> list[MemoryRecord]:
        return await self._run(self._search_exec, lambda: list(self.transcript.export(pai)))

    async def index_lag(self) -> int:
        """``bot.ports.IndexLag``: records in the transcript not yet in the vector index."""
        return await self._run(self._search_exec, self.transcript.pending_count)

    async def stats(self) -> dict[str, Any]:
        def collect() -> dict[str, Any]:
            pais = self.transcript.stats()
            for p in pais:
                p["vectors"] = self.index.count(str(p["pai"]))
            size = _dir_size(self.data_dir) if self.data_dir else None
            return {"pais": pais, "embedding": self.embedder.fingerprint, "data_dir_bytes": size}

        return await self._run(self._idx_exec, collect)

    async def reindex(self) -> int:
        """Rebuild every pai's word index, drop its vector collection and rebuild all vectors from the
        transcript; returns the records waiting for vectors."""

        def reset() -> int:
            self.transcript.rebuild_lexical(index_text)
            for pai in self.transcript.pais():
                self.index.drop(pai)
            self.transcript.mark_all_pending()
            return self.transcript.pending_count()

        n = await self._run(self._idx_exec, reset)
        await self.flush()
        return n

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Apply retention (``memory.retention_days`` and per-group ``retention_days``)."""
        if self._retention is None:
            return 0
        now = now or datetime.now(timezone.utc)

        def purge() -> int:
            removed = 0
            for chat in self.transcript.chat_keys():
                days = self._retention(chat) if self._retention else 0
                if days > 0:
                    removed += len(self.transcript.purge_before(now - timedelta(days=days), chat_key=chat))
            return removed

        n = await self._run(self._db_exec, purge)
        if n:
            self._authors.clear()
            self._bots.clear()
            self._kick()
        return n


# ---------------------------------------------------------------------- helpers


def _aware_record(rec: MemoryRecord) -> MemoryRecord:
    if rec.sent_at.tzinfo is None:
        return dataclasses.replace(rec, sent_at=rec.sent_at.replace(tzinfo=timezone.utc))
    return rec


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _open_embedded_index(path: Path) -> tuple[Any, bool]:
    """Connect to the embedded chroma directory; if it cannot be opened, move it aside and start a fresh one
    (the caller then rebuilds from the transcript). Returns ``(client, rebuilt)``."""
    try:
        client = connect_embedded(path)
        client.list_collections()
        return client, False
    except Exception as exc:  # a damaged directory fails in sqlite, the Rust bindings, or chroma itself
        broken = path.with_name(f"{path.name}.broken-{int(time.time())}")
        log.error("the chroma index at %s cannot be opened (%s); moving it to %s and rebuilding", path, exc, broken)
        if path.exists():
            shutil.move(str(path), str(broken))
        forget_cached_system(path)
        return connect_embedded(path), True


async def open_memory(
    settings: MemoryConfig,
    params: RetrievalParams | None = None,
    *,
    load_litellm: LitellmLoader | None = None,
    kinds: KindRules | None = None,
) -> HybridMemoryStore:
    """Build the store the settings describe (the blocking opening runs on a worker thread). Does not take
    the data-directory lock; the caller holds it (``memory.lock.acquire_data_dir_lock``). ``load_litellm``
    imports litellm for a ``litellm:<model>`` embedding (default: a plain import); ``kinds`` recognises the
    bot in unclassified records (its names and the command prefixes; ``KindRules.of(settings)``)."""
    return await asyncio.to_thread(open_memory_sync, settings, params, load_litellm=load_litellm, kinds=kinds)


def open_memory_sync(
    settings: MemoryConfig,
    params: RetrievalParams | None = None,
    *,
    load_litellm: LitellmLoader | None = None,
    kinds: KindRules | None = None,
) -> HybridMemoryStore:
    """Blocking variant of ``open_memory`` (opens SQLite and chroma). Records left unindexed by a crash, and vectors missing
    from a lost or damaged chroma directory, are queued for indexing and done in the background."""
    data_dir = settings.data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    transcript = Transcript(data_dir / "memory.sqlite3", kinds, index_text)
    migrate(transcript)
    embedder = make_embedder(settings.memory, load_litellm=load_litellm)
    rebuilt = False
    if settings.memory.backend == "http":
        client = connect_http(settings.memory.url)
    else:
        client, rebuilt = _open_embedded_index(data_dir / "chroma")
    index = ChromaIndex(client, embedder.fingerprint)
    if rebuilt:
        transcript.mark_all_pending()
    else:
        _reconcile(transcript, index)

    def retention(chat_key: str) -> int:
        override = settings.group(chat_key).retention_days
        return settings.memory.retention_days if override is None else override

    has_retention = settings.memory.retention_days > 0 or any(g.retention_days for g in settings.groups.values())
    return HybridMemoryStore(
        transcript, index, embedder, params=params, retention=retention if has_retention else None,
        data_dir=data_dir,
    )  # fmt: skip


def _reconcile(transcript: Transcript, index: ChromaIndex) -> None:
    """Queue a pai for re-indexing when its collection holds fewer vectors than the transcript says were
    indexed (the chroma directory was deleted, or another embedding model was configured)."""
    for pai, indexed in transcript.indexed_counts().items():
        have = index.count(pai)
        if have < indexed:
            log.warning("vector index of a pai is missing %d of %d records; re-indexing", indexed - have, indexed)
            transcript.mark_pending(pai)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
