"""Property: whatever the group ids look like, no search ever returns another group's record."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.ports import MemoryRecord
from memory.store import HybridMemoryStore, open_memory
from memory.vector import collection_name
from tests.test_memory_contract import settings_for

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

# ids chromadb would reject as collection names, unicode, very long, look-alikes of each other
awkward_ids = st.one_of(
    st.text(min_size=1, max_size=80),
    st.sampled_from(["a", "..", "x" * 700, "telegram:-1001234", "telegram:-1001234 ", "TELEGRAM:-1001234",
                     "群:中文", "web:1/../2", "pai:😀", "", " ", "discord:1;DROP TABLE records"]),
    st.builds(lambda s: "matrix:!" + s + ":example.org", st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=300)),
)  # fmt: skip


class LoopThread:
    """An event loop on its own thread, so a synchronous hypothesis test can drive one long-lived store."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="isolation-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopThread, HybridMemoryStore]]:
    lt = LoopThread()
    store = lt.run(open_memory(settings_for(tmp_path_factory.mktemp("iso"))))  # type: ignore[arg-type]
    store.retriever.dense_weight = 0.3  # search the vectors too, as a real embedding model does
    store.index.own_at = 3  # and let groups with a few records move to their own collection
    try:
        yield lt, store
    finally:
        lt.run(store.close())
        lt.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(awkward_ids, min_size=2, max_size=5, unique=True), msg_id=st.text(max_size=40))
def test_no_search_returns_another_groups_record(shared: tuple[LoopThread, HybridMemoryStore],
                                                 groups: list[str], msg_id: str) -> None:  # fmt: skip
    lt, store = shared

    async def scenario() -> None:
        for n, g in enumerate(groups):
            # the same message id and near-identical text in every group
            await store.record(MemoryRecord(id=msg_id or "m", pai=g, chat_key=g, author_id="u", author_name="Sam",
                                            text=f"shared launch plan secret {n}", sent_at=T0))  # fmt: skip
        await store.flush()
        for g in groups:
            for q in ("shared launch plan secret", "secret", "Sam"):
                hits = await store.search(g, q, 20)
                assert hits, "each group finds its own record"
                assert {h.record.pai for h in hits} == {g}
                assert {h.record.chat_key for h in hits} == {g}

    lt.run(scenario())


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from memory.vector import ChromaIndex, connect_embedded

    index = ChromaIndex(connect_embedded(tmp_path_factory.mktemp("vec")), "hash512v2", own_at=4)
    try:
        yield index
    finally:
        index.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(awkward_ids, min_size=2, max_size=4, unique=True), sizes=st.lists(st.integers(1, 6), min_size=4,
       max_size=4), rid=st.text(min_size=1, max_size=20))  # fmt: skip
def test_the_vector_index_never_answers_with_another_groups_vector(vectors: Any, groups: list[str], sizes: list[int],
                                                                    rid: str) -> None:  # fmt: skip
    """Small groups share a collection behind a filter, larger ones have their own (own_at=4 here): the same
    record ids and the very same vector in every group, written in one call as the indexer writes a batch of
    live messages, and each group finds only its own."""
    import numpy as np

    vec = np.ones(512, dtype=np.float32) / np.sqrt(512)
    for g in groups:
        vectors.drop(g)
    vectors.upsert_many([(g, [f"{rid}{i}" for i in range(n)], np.stack([vec] * n))
                         for g, n in zip(groups, sizes)])  # fmt: skip
    for g, n in zip(groups, sizes):
        assert vectors.count(g) == n
    for g, n in zip(groups, sizes):
        found = vectors.query(g, vec, 50)
        assert sorted(i for i, _ in found) == sorted(f"{rid}{i}" for i in range(n))
    for g in groups:
        vectors.drop(g)
        assert vectors.count(g) == 0


@given(awkward_ids, st.sampled_from(["hash512v1", "chroma-minilm", "litellm-0a1b2c3d", "Weird Model/v2!"]))
def test_collection_names_are_always_valid_for_chromadb(pai: str, fingerprint: str) -> None:
    name = collection_name(pai, fingerprint)
    assert 3 <= len(name) <= 63
    assert name[0].isalnum() and name[-1].isalnum()
    assert all(c.isalnum() and c.isascii() or c in "-_." for c in name)


def test_distinct_pais_get_distinct_collections() -> None:
    keys = ["telegram:-1001234", "telegram:-1001234 ", "TELEGRAM:-1001234", "x" * 700, "x" * 701]
    assert len({collection_name(k, "hash512v1") for k in keys}) == len(keys)


def test_pai_of_maps_bridged_groups_to_one_memory(tmp_path: Path) -> None:
    from bot.config import parse_settings

    s = parse_settings('pais:\n  friends: ["telegram:-1", "discord:2"]\nadapters:\n  web:\n    enabled: false\n')
    assert s.pai_of("telegram:-1") == s.pai_of("discord:2") != s.pai_of("telegram:-3")
