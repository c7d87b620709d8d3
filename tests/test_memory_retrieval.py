"""Retrieval at scale: the bounded lexical plan, batched transcript writes, and ranking on light rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.ports import MemoryRecord, SearchFilters
from memory.retrieval import RetrievalParams, split_terms
from memory.store import HybridMemoryStore, index_text, open_memory
from memory.textnorm import fts_match
from memory.transcript import Transcript
from tests.test_memory_contract import settings_for

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
PAI = "web:scale"


def msg(i: int, text: str, author: str = "Ann", pai: str = PAI) -> MemoryRecord:
    return MemoryRecord(id=f"r{i}", pai=pai, chat_key=pai, author_id=f"u-{author.lower()}", author_name=author,
                        text=text, sent_at=T0 + timedelta(minutes=i))  # fmt: skip


def test_split_terms_keeps_everything_when_the_budget_allows() -> None:
    assert split_terms(["venue", "party"], [3, 5], budget=10) == (["venue", "party"], [])
    assert split_terms(["venue", "absent"], [3, 0], budget=10) == (["venue"], [])  # no match: dropped


def test_split_terms_ranks_the_rarest_terms_within_the_budget() -> None:
    selective, common = split_terms(["the", "venue", "party", "zebra"], [900, 40, 300, 2], budget=400)
    assert selective == ["zebra", "venue", "party"] and common == ["the"]
    assert split_terms(["a", "b"], [501, 700], budget=500) == ([], ["a", "b"])


@pytest.fixture
async def tight(tmp_path: Path) -> AsyncIterator[HybridMemoryStore]:
    """A store whose lexical budget is tiny, so a few dozen messages already exercise the bounded plan."""
    params = RetrievalParams(lexical_budget=10, recent_window=5, w_dense=0.0, neighbour_weight=0.0)
    mem = await open_memory(settings_for(tmp_path), params)  # type: ignore[arg-type]
    try:
        yield mem
    finally:
        await mem.close()


async def fill_common(store: HybridMemoryStore) -> None:
    # "lunch" is in every message; "zeppelin" only in an old one, "tandem" in an old one by Bob
    texts = [f"lunch plans number {i}" for i in range(60)]
    texts[3] = "lunch at the zeppelin museum cafe"
    texts[7] = "lunch ride on the tandem bike"
    await store.import_records([msg(i, t, "Bob" if i == 7 else "Ann") for i, t in enumerate(texts)])


async def test_a_rare_term_finds_an_old_message_despite_a_common_one(tight: HybridMemoryStore) -> None:
    await fill_common(tight)
    hits = await tight.search(PAI, "lunch zeppelin", 3)
    assert hits[0].record.id == "r3"


async def test_common_terms_alone_rank_the_most_recent_matches(tight: HybridMemoryStore) -> None:
    await fill_common(tight)
    hits = await tight.search(PAI, "lunch", 5)
    assert len(hits) == 5 and {h.record.id for h in hits} <= {f"r{i}" for i in range(55, 60)}


async def test_filters_apply_on_the_bounded_plan(tight: HybridMemoryStore) -> None:
    await fill_common(tight)
    hits = await tight.search(PAI, "lunch", 5, SearchFilters(author_names=("bob",)))
    assert [h.record.id for h in hits] == ["r7"]
    early = SearchFilters(until=T0 + timedelta(minutes=10))
    hits = await tight.search(PAI, "lunch", 20, early)
    assert hits and all(h.record.sent_at < T0 + timedelta(minutes=10) for h in hits)


def test_batched_insert_handles_repeats_and_edits_within_one_batch(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "memory.sqlite3")
    try:
        first = t.insert([msg(1, "one"), msg(2, "two"), msg(1, "one"), msg(2, "two, edited"), msg(3, "three")],
                         index_text)  # fmt: skip
        assert [r.record.id for r in first] == ["r1", "r2", "r2", "r3"]
        assert [(r.id, r.text) for r in t.export(PAI)] == [("r1", "one"), ("r2", "two, edited"), ("r3", "three")]
        own = lambda term: fts_match([term], ("body",))  # noqa: E731 - the record's own text, not its context
        assert [s for s, _ in t.lexical(PAI, own("edited"), 5, None)] == [first[1].seq]
        assert len(t.lexical(PAI, own("two"), 5, None)) == 1  # the edited record is indexed once, not twice
        # the next turn carries it as context
        assert [s for s, _ in t.lexical(PAI, fts_match(["edited"], ("prev",)), 5, None)] == [first[-1].seq]
        assert t.insert([msg(1, "one"), msg(3, "three")], index_text) == []  # idempotent
        # sequence numbers are never reused, even after the newest record is forgotten
        t.forget(PAI, ids=["r3"])
        again = t.insert([msg(4, "four")], index_text)
        assert again[0].seq > first[-1].seq
    finally:
        t.close()


def test_metas_carry_what_ranking_needs_and_pending_what_indexing_needs(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "memory.sqlite3")
    try:
        rows = t.insert([msg(1, "hello there", "Bob"), msg(2, "general kenobi")], index_text)
        metas = t.metas(PAI, [r.seq for r in rows])
        m = metas[rows[0].seq]
        assert (m.author_id, m.author_name, m.chat_key, m.kind) == ("u-bob", "Bob", PAI, "statement")
        assert m.ts == (T0 + timedelta(minutes=1)).timestamp()
        assert t.metas("web:other", [r.seq for r in rows]) == {}  # never across pais
        pending = [(p.id, p.author_name, p.text) for p in t.pending(10)]
        assert pending == [("r1", "Bob", "hello there"), ("r2", "Ann", "general kenobi")]
        assert t.term_counts(PAI, ["hello", "kenobi", "absent"], cap=10) == [1, 1, 0]
    finally:
        t.close()


def test_term_counts_kept_between_searches_follow_every_commit(tmp_path: Path) -> None:
    """Counts are kept while nothing changes; a commit from this thread or another one is seen at once."""
    import threading

    t = Transcript(tmp_path / "memory.sqlite3")
    try:
        t.insert([msg(1, "hello there"), msg(2, "hello again")], index_text)
        assert t.term_counts(PAI, ["hello", "there"], cap=10) == [2, 1]
        assert t.term_counts(PAI, ["hello", "there"], cap=10) == [2, 1]
        t.insert([msg(3, "hello world")], index_text)  # this thread's connection
        assert t.term_counts(PAI, ["hello", "there"], cap=10) == [3, 1]
        other = threading.Thread(target=t.forget, args=(PAI, None, ("r2",)))  # another thread's connection
        other.start()
        other.join()
        assert t.term_counts(PAI, ["hello", "there"], cap=10) == [2, 1]
    finally:
        t.close()
