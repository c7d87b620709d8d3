"""The MemoryStore contract, run unchanged against embedded chromadb and a real `chroma run` server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.config import parse_settings
from bot.ports import MemoryRecord, SearchFilters
from memory.store import HybridMemoryStore, open_memory
from tests.chroma_server import chroma_url  # noqa: F401 - fixture

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def settings_for(data_dir: Path, backend: str = "embedded", url: str = "") -> object:
    lines = [f"bot:\n  data_dir: {data_dir}", f"memory:\n  backend: {backend}\n  embedding: offline"]
    if url:
        lines[-1] += f"\n  url: {url}"
    return parse_settings("\n".join(lines) + "\nadapters:\n  web:\n    enabled: false\n")


@pytest.fixture(params=["embedded", pytest.param("http", marks=pytest.mark.chroma_server)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HybridMemoryStore]:
    url = request.getfixturevalue("chroma_url") if request.param == "http" else ""
    mem = await open_memory(settings_for(tmp_path, request.param, url))  # type: ignore[arg-type]
    try:
        yield mem
    finally:
        await mem.close()


@pytest.fixture
def pai() -> str:
    # unique per test: the chroma server is shared by the whole session
    return f"web:{uuid.uuid4().hex[:8]}"


def rec(pai: str, rid: str, author: str, text: str, minutes: int = 0, kind: str = "message") -> MemoryRecord:
    return MemoryRecord(
        id=rid, pai=pai, chat_key=pai, author_id=f"u-{author.lower()}", author_name=author, text=text,
        sent_at=T0 + timedelta(minutes=minutes), kind=kind,
    )  # fmt: skip


CHAT = [
    ("Alice", "Should we hold the summer party at the Riverside Hall or in the park?"),
    ("Bob", "Riverside Hall is nicer, and it has a kitchen"),
    ("Carol", "Agreed, let's book the venue for the 14th of July"),
    ("Alice", "I tried the Golden Dragon restaurant last week, best dumplings in town"),
    ("Bob", "My bike got a flat tyre on the way to work"),
    ("Carol", "我们周六去公园野餐吧，天气很好"),
    ("Dan", "明日は東京で会議があります"),
    ("Dan", "The deploy script failed again with a timeout on the database migration"),
]


async def fill(store: HybridMemoryStore, pai: str) -> None:
    for i, (author, text) in enumerate(CHAT):
        await store.record(rec(pai, f"m{i}", author, text, minutes=i))


async def ids(store: HybridMemoryStore, pai: str, query: str, k: int = 3, f: SearchFilters | None = None) -> list[str]:
    return [h.record.id for h in await store.search(pai, query, k, f)]


async def test_search_finds_the_message_with_who_when_and_score(store: HybridMemoryStore, pai: str) -> None:
    await fill(store, pai)
    await store.flush()
    hits = await store.search(pai, "which restaurant has good dumplings?", k=3)
    top = hits[0]
    assert top.record.id == "m3"
    assert (top.record.author_name, top.record.author_id) == ("Alice", "u-alice")
    assert top.record.sent_at == T0 + timedelta(minutes=3)
    assert "Golden Dragon" in top.record.text
    assert top.score > 0 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_recorded_message_is_searchable_before_vectors_are_written(store: HybridMemoryStore, pai: str) -> None:
    await store.record(rec(pai, "x1", "Eve", "the wifi password is on the fridge"))
    assert await ids(store, pai, "wifi password", 1) == ["x1"]


async def test_dense_side_matches_what_words_do_not(store: HybridMemoryStore, pai: str) -> None:
    store.retriever.dense_weight = 0.3  # the dense side as a real embedding model uses it (offline's weight is 0)
    await fill(store, pai)
    await store.flush()
    # misspelt: no FTS term matches, character n-grams still do
    assert (await ids(store, pai, "restaurnt dumplngs", 1)) == ["m3"]


async def test_record_is_idempotent_and_an_edit_replaces_the_text(store: HybridMemoryStore, pai: str) -> None:
    for _ in range(3):
        await store.record(rec(pai, "e1", "Eve", "meet at the old harbour"))
    await store.flush()
    assert [r.id for r in await store.export(pai)] == ["e1"]
    assert await ids(store, pai, "harbour", 5) == ["e1"]
    await store.record(rec(pai, "e1", "Eve", "meet at the train station instead"))
    await store.flush()
    assert await ids(store, pai, "harbour", 5) == []
    assert await ids(store, pai, "train station", 5) == ["e1"]
    stats = {p["pai"]: p for p in (await store.stats())["pais"]}
    assert stats[pai]["records"] == 1 and stats[pai]["vectors"] == 1


async def test_recent_is_oldest_first_and_honours_before(store: HybridMemoryStore, pai: str) -> None:
    await fill(store, pai)
    last3 = await store.recent(pai, 3)
    assert [r.id for r in last3] == ["m5", "m6", "m7"]
    earlier = await store.recent(pai, 2, before=T0 + timedelta(minutes=3))
    assert [r.id for r in earlier] == ["m1", "m2"]


async def test_search_never_crosses_pais(store: HybridMemoryStore, pai: str) -> None:
    other = pai + "-other"
    await store.record(rec(pai, "a", "Alice", "the secret launch code is pineapple"))
    await store.record(rec(other, "a", "Mallory", "pineapple launch secret code for the other group"))
    await store.record(rec(other, "b", "Mallory", "pineapple pineapple pineapple"))
    await store.flush()
    hits = await store.search(pai, "pineapple launch code", 10)
    assert [(h.record.pai, h.record.id, h.record.author_name) for h in hits] == [(pai, "a", "Alice")]
    assert {h.record.pai for h in await store.search(other, "pineapple", 10)} == {other}


@pytest.mark.parametrize(
    ("query", "expected"),
    [("公园", "m5"), ("周六野餐", "m5"), ("天气", "m5"), ("東京", "m6"), ("会議", "m6"), ("会议 東京 meeting", "m6")],
)
async def test_chinese_japanese_and_mixed_queries(store: HybridMemoryStore, pai: str, query: str, expected: str) -> None:
    await fill(store, pai)
    await store.flush()
    assert (await ids(store, pai, query, 1)) == [expected]


async def test_filters_by_author_time_and_kind(store: HybridMemoryStore, pai: str) -> None:
    await fill(store, pai)
    await store.record(rec(pai, "f1#0", "Bob", "Riverside Hall floor plan: kitchen on the left", 30, kind="file"))
    await store.flush()
    q = "Riverside Hall kitchen venue"
    by_id = await store.search(pai, q, 10, SearchFilters(author_ids=("u-carol",)))
    assert by_id and {h.record.author_id for h in by_id} == {"u-carol"}
    by_name = await store.search(pai, q, 10, SearchFilters(author_names=("bob",)))
    assert {h.record.id for h in by_name} >= {"m1", "f1#0"} and {h.record.author_name for h in by_name} == {"Bob"}
    window = SearchFilters(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    timed = await store.search(pai, q, 10, window)
    assert {h.record.id for h in timed} <= {"m1", "m2"} and "m1" in {h.record.id for h in timed}
    files = await store.search(pai, q, 10, SearchFilters(kinds=("file",)))
    assert [h.record.id for h in files] == ["f1#0"]
    messages = await store.search(pai, q, 10, SearchFilters(kinds=("statement",)))
    assert "f1#0" not in {h.record.id for h in messages} and messages


async def test_forget_removes_from_transcript_lexical_and_vector_index(store: HybridMemoryStore, pai: str) -> None:
    await fill(store, pai)
    await store.flush()
    assert await store.forget(pai, author_id="u-alice") == 2
    assert await store.forget(pai, ids=["m6", "nope"]) == 1
    left = {r.id for r in await store.export(pai)}
    assert left == {"m1", "m2", "m4", "m5", "m7"}
    assert store.index.count(pai) == 5
    vec = store.embedder.embed(["Alice: Golden Dragon restaurant dumplings"])[0]
    assert "m3" not in {i for i, _ in store.index.query(pai, vec, 20)}
    for q in ("Golden Dragon dumplings", "summer party park", "東京"):
        assert not {"m0", "m3", "m6"} & set(await ids(store, pai, q, 10))
    assert await store.forget(pai, author_id="u-nobody") == 0


async def test_reindex_rebuilds_every_vector(store: HybridMemoryStore, pai: str) -> None:
    store.retriever.dense_weight = 0.3
    await fill(store, pai)
    await store.flush()
    assert await store.reindex() >= len(CHAT)
    assert store.index.count(pai) == len(CHAT)
    assert (await ids(store, pai, "restaurnt dumplngs", 1)) == ["m3"]


async def test_empty_query_and_unknown_pai(store: HybridMemoryStore, pai: str) -> None:
    await fill(store, pai)
    assert await store.search(pai, "   ", 5) == []
    assert await store.search(pai, "dumplings", 0) == []
    assert await store.search("web:never-seen", "dumplings", 5) == []
    assert await store.recent("web:never-seen", 5) == []
