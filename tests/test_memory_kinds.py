"""Record kinds in the store: what is evidence, how unclassified and older records get their kind, and that
context columns never keep a forgotten member's words."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.events import ChatRef, Message, PersonRef
from bot.policy import Decision, record_kind
from bot.ports import BOT, COMMAND, QUESTION, STATEMENT, MemoryRecord, SearchFilters
from memory.kinds import KindRules
from memory.rows import SCHEMA_VERSION
from memory.store import open_memory
from memory.textnorm import fts_match
from tests.test_memory_contract import settings_for

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PAI = "web:1"


def rec(i: int, text: str, author: str = "Ann", kind: str = "message", is_bot: bool = False) -> MemoryRecord:
    return MemoryRecord(id=f"r{i}", pai=PAI, chat_key=PAI, author_id=f"u-{author.lower()}", author_name=author,
                        text=text, sent_at=T0 + timedelta(minutes=i), kind=kind, is_bot=is_bot)  # fmt: skip


def msg(text: str, from_me: bool = False) -> Message:
    return Message(event_id="e", id="1", chat=ChatRef("web", "1"), author=PersonRef("web", "u", "Ann"), text=text,
                   sent_at=T0, from_me=from_me)  # fmt: skip


def test_the_pipeline_says_what_a_message_is_from_the_policy_decision() -> None:
    assert record_kind(msg("hi", from_me=True), Decision(False, "own message")) == BOT
    assert record_kind(msg("/search venue"), Decision(True, "command", command="search")) == COMMAND
    assert record_kind(msg("/x@OtherBot"), Decision(False, "command for another bot")) == COMMAND
    for reason in ("mention", "reply to me", "direct message"):
        assert record_kind(msg("what is the venue?"), Decision(True, reason)) == QUESTION
    for reason in ("not addressed", "keyword", "message from a bot", "edited or forwarded message"):
        assert record_kind(msg("the venue is the Blue Hall"), Decision(reason == "keyword", reason)) == STATEMENT


def test_unclassified_text_is_classified_by_the_bots_names_and_the_command_prefixes() -> None:
    rules = KindRules(("Pai", "派"), ("/", "!"))
    assert rules.classify("@Pai what is the venue?", False) == QUESTION
    assert rules.classify("pai, remind us at 5", False) == QUESTION
    assert rules.classify("＠派 场地在哪", False) == QUESTION
    assert rules.classify("/search venue", False) == COMMAND
    assert rules.classify("!remind me", False) == COMMAND
    assert rules.classify("the painting is great", False) == STATEMENT  # "pai" inside a word is no mention
    assert rules.classify("/ not a command", False) == STATEMENT
    assert rules.classify("anything", True) == BOT


async def test_only_evidence_is_searched_unless_other_kinds_are_asked_for(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        await store.import_records([
            rec(1, "The venue is the Blue Hall", "Alice"),
            rec(2, "@Pai what is the venue?", "Carol"),
            rec(3, "/search venue", "Dan"),
            rec(4, "Here is what this group said: the venue is the Blue Hall", "Pai", is_bot=True),
        ])  # fmt: skip
        await store.flush()
        kinds = {r.id: r.kind for r in await store.export(PAI)}
        assert kinds == {"r1": STATEMENT, "r2": QUESTION, "r3": COMMAND, "r4": BOT}
        assert [h.record.id for h in await store.search(PAI, "venue", 10)] == ["r1"]  # its own question: dropped
        assert {h.record.id for h in await store.search(PAI, "what did Pai say about the venue", 10)} >= {"r1", "r4"}
        every = SearchFilters(kinds=(STATEMENT, QUESTION, COMMAND, BOT))
        assert {h.record.id for h in await store.search(PAI, "venue", 10, every)} == {"r1", "r2", "r3", "r4"}
        assert store.index.count(PAI) == 1  # only evidence is embedded
    finally:
        await store.close()


async def test_an_id_taken_by_another_author_is_refused_but_the_bots_own_echo_is_no_conflict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        await store.record(rec(1, "The venue is the Blue Hall", "Alice"))
        own = MemoryRecord(id="r2", pai=PAI, chat_key=PAI, author_id="@me", author_name="Pai",
                           text="Noted: the Blue Hall.", sent_at=T0, kind=BOT, is_bot=True)  # fmt: skip
        await store.record(own)
        with caplog.at_level("WARNING", logger="paibot.memory"):
            # the platform shows the bot its own message again, under the bot's platform id (Matrix, Discord)
            await store.record(dataclasses.replace(own, author_id="@pai:example.org"))
            assert "refused" not in caplog.text
            # someone else's message under Alice's id is never merged into hers
            await store.record(rec(1, "The venue is the Red Hall", "Mallory"))
            assert "refused 1 record" in caplog.text
        kept = {r.id: (r.author_name, r.text) for r in await store.export(PAI)}
        assert kept == {"r1": ("Alice", "The venue is the Blue Hall"), "r2": ("Pai", "Noted: the Blue Hall.")}
    finally:
        await store.close()


async def test_repeated_questions_never_crowd_out_the_statement_they_ask_about(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        facts = [rec(0, "The venue for the summer party is the Blue Hall", "Alice")]
        noise = [rec(i, f"@Pai where is the summer party venue? (asking again, {i})", "Carol") for i in range(1, 40)]
        await store.import_records(facts + noise)
        hits = await store.search(PAI, "where is the summer party venue", 5)
        assert hits[0].record.id == "r0"
        asked_elsewhere = await store.search(PAI, "who asked about the party", 5)
        assert all(h.record.kind == QUESTION for h in asked_elsewhere[1:]) or asked_elsewhere[0].record.id == "r0"
    finally:
        await store.close()


async def test_a_turn_is_found_through_the_turns_before_it(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        await store.import_records([
            rec(1, "知道恭王府吗？", "Wang"), rec(2, "知道，是清代的王府。", "Li"),
            rec(3, "门票多少钱？", "Wang"), rec(4, "40元。", "Li"),
            rec(5, "我们周末去故宫吧", "Wang"), rec(6, "好的", "Li"),
        ])  # fmt: skip
        hits = [h.record.id for h in await store.search(PAI, "恭王府的门票多少钱？", 6)]
        assert "r4" in hits[:4]  # "40元。" shares no word with the question: its context does
        assert hits.index("r4") < hits.index("r6") if "r6" in hits else True
    finally:
        await store.close()


async def test_forgetting_a_member_removes_her_words_from_the_context_of_later_turns(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        await store.import_records([rec(1, "my secret flamingo password", "Alice")] +
                                   [rec(i, f"unrelated chatter {i}", "Bob") for i in range(2, 12)])  # fmt: skip
        t = store.transcript
        everywhere = fts_match(["flamingo"], ("author", "body", "prev", "far"))
        assert t.lexical(PAI, everywhere, 20, None)  # in Alice's row and in the context of Bob's next turns
        assert await store.forget(PAI, author_id="u-alice") == 1
        assert t.lexical(PAI, everywhere, 20, None) == []
        assert await store.search(PAI, "flamingo", 5) == []
    finally:
        await store.close()


def old_database(path: Path) -> None:
    """A transcript as the previous version wrote it: kind 'message' for chat, one FTS table per pai."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE records(seq INTEGER PRIMARY KEY AUTOINCREMENT, pai TEXT NOT NULL, id TEXT NOT NULL,
            chat_key TEXT NOT NULL, author_id TEXT NOT NULL, author_name TEXT NOT NULL, text TEXT NOT NULL,
            ts REAL NOT NULL, sent_at TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'message', reply_to_id TEXT,
            url TEXT NOT NULL DEFAULT '', is_bot INTEGER NOT NULL DEFAULT 0, meta TEXT NOT NULL DEFAULT '{}',
            indexed INTEGER NOT NULL DEFAULT 0, UNIQUE(pai, id));
        CREATE TABLE pais(pai TEXT PRIMARY KEY, tag TEXT NOT NULL UNIQUE);
        CREATE TABLE index_tombstones(pai TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY(pai, id));
        CREATE TABLE kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE VIRTUAL TABLE "fts_t1" USING fts5(author, body, tokenize='porter unicode61 remove_diacritics 2');
        INSERT INTO pais VALUES ('web:1', 't1');
    """)
    rows = [(1, "Alice", "u-alice", "The venue is the Blue Hall", 0), (2, "Carol", "u-carol", "@Pai what is the venue?", 0),
            (3, "Dan", "u-dan", "/search venue", 0), (4, "Pai", "@me", "the venue is the Blue Hall, said Alice", 1),
            (5, "Bob", "u-bob", "it has a kitchen too", 0)]  # fmt: skip
    for seq, name, aid, text, is_bot in rows:
        db.execute("INSERT INTO records(seq, pai, id, chat_key, author_id, author_name, text, ts, sent_at, is_bot,"
                   " indexed) VALUES (?, 'web:1', ?, 'web:1', ?, ?, ?, ?, ?, ?, 1)",
                   (seq, f"r{seq}", aid, name, text, (T0 + timedelta(minutes=seq)).timestamp(),
                    (T0 + timedelta(minutes=seq)).isoformat(), is_bot))  # fmt: skip
        db.execute('INSERT INTO "fts_t1"(rowid, author, body) VALUES (?, ?, ?)', (seq, name, text))
    db.commit()
    db.close()


@pytest.mark.parametrize("restarts", [1, 2])
async def test_an_older_transcript_is_migrated_once_kinds_derived_and_index_rebuilt(tmp_path: Path, restarts: int) -> None:
    old_database(tmp_path / "memory.sqlite3")
    for _ in range(restarts):
        store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
        try:
            kinds = {r.id: r.kind for r in await store.export(PAI)}
            assert kinds == {"r1": STATEMENT, "r2": QUESTION, "r3": COMMAND, "r4": BOT, "r5": STATEMENT}
            assert [h.record.id for h in await store.search(PAI, "venue", 10)] == ["r1", "r5"]  # r5 by context
            assert store.transcript.kv_get("schema") == SCHEMA_VERSION
            await store.flush()
            assert store.transcript.tombstones(10) == []  # the non-evidence vectors were dropped
        finally:
            await store.close()


async def test_concurrent_records_share_commits_and_each_returns_once_its_own_is_durable(tmp_path: Path) -> None:
    store = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    calls: list[int] = []
    insert = store.transcript.insert

    def counting(records, index_text):  # type: ignore[no-untyped-def]
        calls.append(len(records))
        return insert(records, index_text)

    store.transcript.insert = counting  # type: ignore[method-assign]
    try:
        import asyncio

        await asyncio.gather(*(store.record(rec(i, f"message {i} about the lantern festival")) for i in range(40)))
        assert sum(calls) == 40 and len(calls) < 40  # batched: fewer transactions than records
        assert len(await store.export(PAI)) == 40  # and every one of them committed when record() returned
    finally:
        await store.close()
