"""Retrieval at scale: the bounded lexical plan, batched transcript writes, and ranking on light rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.ports import MemoryRecord, SearchFilters
from bot.recall import search_query
from memory.querytime import query_spans, says_time
from memory.retrieval import RetrievalParams, asks_when, split_terms
from memory.rows import SCHEMA_VERSION
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


# ---------------------------------------------------------------------- time in questions and turns


def test_when_questions_and_turns_that_say_a_time_are_recognised() -> None:
    assert asks_when("When did Melanie go camping?") and asks_when("what year did she move?")
    assert asks_when("他什么时候出生的？") and not asks_when("What did Melanie paint?")
    # as the bot asks its memory: the question without filler words, after a mention
    assert asks_when(search_query("@Pai when is the party?")) and asks_when(search_query("Pai, what year was that?"))
    assert not asks_when(search_query("What did she do when she got back?"))
    assert says_time("We went camping last weekend") and says_time("I moved there in 2019")
    assert says_time("上周去了公园") and says_time("Since May it's been great")
    assert not says_time("We went camping with the kids, it was great")


def test_a_date_written_without_a_space_after_its_comma_is_read() -> None:
    (start, end), = query_spans("the forest picture shared on December 1,2023")
    assert datetime.fromtimestamp(start, timezone.utc) == datetime(2023, 12, 1, tzinfo=timezone.utc)
    assert end - start == 86400


async def test_a_when_question_prefers_the_turn_that_says_when(tmp_path: Path) -> None:
    turns = ["camping with the kids was great", "we went camping by the big lake with the kids and the dog last weekend",
             "the bus was late again", "pizza for dinner", "my sister called"]  # fmt: skip
    for boost, first in ((0.0, "r0"), (1.0, "r1")):
        params = RetrievalParams(when_boost=boost)
        store = await open_memory(settings_for(tmp_path / str(boost)), params)  # type: ignore[arg-type]
        try:
            await store.import_records([msg(i, t) for i, t in enumerate(turns)])
            hits = await store.search(PAI, "When did Ann go camping?", 2)
            assert hits[0].record.id == first
        finally:
            await store.close()


async def test_a_named_date_finds_its_turns_beyond_the_first_candidates(tmp_path: Path) -> None:
    # every turn says "lunch"; the one from the named day is the weakest match, so only a candidate search
    # within that day brings it to the date boost
    texts = ["lunch"] * 6 + ["a long and wordy note about lunch, the weather, the bus and the rest of the day"]
    texts += ["the bus was late again", "pizza for dinner", "my sister called", "see you soon"]
    recs = [MemoryRecord(id=f"r{i}", pai=PAI, chat_key=PAI, author_id="u-ann", author_name="Ann", text=t,
                         sent_at=T0 + timedelta(days=i)) for i, t in enumerate(texts)]  # fmt: skip
    for on, found in ((False, False), (True, True)):
        params = RetrievalParams(candidates=3, date_candidates=on)
        store = await open_memory(settings_for(tmp_path / str(on)), params)  # type: ignore[arg-type]
        try:
            await store.import_records(recs)
            hits = await store.search(PAI, "lunch on 7 June 2024", 3)  # the date's words are not "not found"
            assert ("r6" in [h.record.id for h in hits]) is found
        finally:
            await store.close()


async def test_reindex_rebuilds_the_word_index_too(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        await store.import_records([msg(0, "the venue is the Blue Hall"), msg(1, "see you there")])
        with store.transcript.transaction() as db:  # a word index in an older layout, or damaged
            for (tag,) in db.execute("SELECT tag FROM pais").fetchall():
                db.execute(f'DELETE FROM "fts_{tag}"')
        assert await store.search(PAI, "venue", 5) == []
        await store.reindex()
        assert [h.record.id for h in await store.search(PAI, "venue", 5)][:1] == ["r0"]
    finally:
        await store.close()


async def test_a_word_index_of_an_older_layout_is_rebuilt_when_the_memory_opens(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        await store.import_records([msg(0, "the venue is the Blue Hall")])
        with store.transcript.transaction() as db:
            for (tag,) in db.execute("SELECT tag FROM pais").fetchall():
                db.execute(f'DELETE FROM "fts_{tag}"')
            db.execute("UPDATE kv SET value = '2' WHERE key = 'schema'")
    finally:
        await store.close()
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        assert [h.record.id for h in await store.search(PAI, "venue", 5)] == ["r0"]
        assert store.transcript.kv_get("schema") == SCHEMA_VERSION
    finally:
        await store.close()
