"""Crash safety, index repair and the data-directory lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.errors import DataDirLocked
from bot.ports import MemoryRecord
from memory.lock import acquire_data_dir_lock
from memory.store import index_text, open_memory
from memory.transcript import Transcript
from tests.test_memory_contract import settings_for

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[1]


def make(pai: str, i: int, text: str) -> MemoryRecord:
    return MemoryRecord(id=str(i), pai=pai, chat_key=pai, author_id="u1", author_name="Ann", text=text,
                        sent_at=T0 + timedelta(seconds=i))  # fmt: skip


async def test_records_left_unindexed_by_a_crash_are_indexed_at_the_next_start(tmp_path: Path) -> None:
    # what a crash between the transcript commit and the background indexing leaves behind
    t = Transcript(tmp_path / "memory.sqlite3")
    t.insert([make("web:1", i, f"note number {i} about zebras") for i in range(5)], index_text)
    t.close()
    mem = await open_memory(settings_for(tmp_path))  # type: ignore[arg-type]
    try:
        assert mem.transcript.pending_count() == 5
        await mem.flush()
        assert mem.transcript.pending_count() == 0 and mem.index.count("web:1") == 5
    finally:
        await mem.close()


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
async def test_missing_or_corrupt_chroma_directory_is_rebuilt_from_the_transcript(tmp_path: Path, damage: str) -> None:
    settings = settings_for(tmp_path)
    mem = await open_memory(settings)  # type: ignore[arg-type]
    for i in range(20):
        await mem.record(make("web:1", i, f"message {i} about the harbour festival"))
    await mem.flush()
    await mem.close()
    chroma = tmp_path / "chroma"
    if damage == "delete":
        import shutil

        shutil.rmtree(chroma)
    else:
        for f in chroma.rglob("*"):
            if f.is_file():
                f.write_bytes(b"\x00garbage" * 64)
    mem = await open_memory(settings)  # type: ignore[arg-type]
    mem.retriever.dense_weight = 0.3  # rank with the vectors, as a real embedding model does
    try:
        await mem.flush()
        assert mem.index.count("web:1") == 20
        assert len(await mem.search("web:1", "harbor festivl", 5)) == 5  # dense side answers typos
    finally:
        await mem.close()
    if damage == "corrupt":
        assert list(tmp_path.glob("chroma.broken-*")), "the damaged directory is kept aside for inspection"


def test_cli_reindex_after_deleting_the_chroma_dir(tmp_path: Path) -> None:
    import argparse
    import asyncio
    import shutil

    from memory.cli import register, run

    settings = settings_for(tmp_path)

    async def fill() -> None:
        mem = await open_memory(settings)  # type: ignore[arg-type]
        for i in range(7):
            await mem.record(make("web:2", i, f"line {i}"))
        await mem.close()

    async def count() -> int:
        mem = await open_memory(settings)  # type: ignore[arg-type]
        try:
            return mem.index.count("web:2")
        finally:
            await mem.close()

    asyncio.run(fill())
    shutil.rmtree(tmp_path / "chroma")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    assert run(parser.parse_args(["memory", "reindex"]), settings) == 0  # type: ignore[arg-type]
    assert asyncio.run(count()) == 7


def test_second_owner_of_a_data_dir_is_refused_with_the_owner_named(tmp_path: Path) -> None:
    lock = acquire_data_dir_lock(tmp_path)
    try:
        code = "import sys; from memory.lock import acquire_data_dir_lock as a; a(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)  # fmt: skip
        assert proc.returncode != 0
        assert "DataDirLocked" in proc.stderr and f"pid {os.getpid()}" in proc.stderr
        with pytest.raises(DataDirLocked):
            acquire_data_dir_lock(tmp_path)
    finally:
        lock.release()
    acquire_data_dir_lock(tmp_path).release()  # free again once released


def test_lock_of_a_killed_process_does_not_block_a_restart(tmp_path: Path) -> None:
    code = "import sys,time; from memory.lock import acquire_data_dir_lock as a; a(sys.argv[1]); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(DataDirLocked):
            acquire_data_dir_lock(tmp_path)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    acquire_data_dir_lock(tmp_path).release()


def test_kill_9_during_import_loses_nothing_reported_and_a_rerun_completes(tmp_path: Path) -> None:
    n = 12_000
    src = tmp_path / "history.jsonl"
    with src.open("w") as fh:
        for i in range(n):
            row = {"id": f"k{i}", "author": f"user{i % 7}", "text": f"message {i} about topic {i % 97}",
                   "sent_at": (T0 + timedelta(seconds=i)).isoformat()}  # fmt: skip
            fh.write(json.dumps(row) + "\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"bot:\n  data_dir: {tmp_path / 'data'}\nadapters:\n  web:\n    enabled: false\n")
    cmd = [sys.executable, "-m", "bot", "--config", str(cfg), "memory", "import", str(src), "--group", "web:k"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    reported = 0
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("imported: "):
            reported = int(line.split()[1])
            if reported >= 1500:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 1500 <= reported < n, "the import must have been killed part-way"
    t = Transcript(tmp_path / "data" / "memory.sqlite3")
    try:
        kept = {r.id for r in t.export("web:k")}
    finally:
        t.close()
    assert {f"import:k{i}" for i in range(reported)} <= kept  # a JSONL file's ids get their own namespace
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{n - len(kept)} new, 0 updated, {len(kept)} unchanged or refused (of {n} records)" in again.stderr
    t = Transcript(tmp_path / "data" / "memory.sqlite3")
    try:
        assert len(list(t.export("web:k"))) == n and t.pending_count() == 0
    finally:
        t.close()


def test_pending_marks_survive_in_the_transcript_file(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "m.sqlite3")
    t.insert([make("web:3", 1, "a")], index_text)
    t.close()
    t = Transcript(tmp_path / "m.sqlite3")
    try:
        assert [r.id for r in t.pending(10)] == ["1"]
        assert t._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        t.close()


class FlakyEmbedder:
    """The offline embedding behind a switch: while ``down``, every call fails like an unreachable server."""

    def __init__(self) -> None:
        from memory.embedding import HashingEmbedder

        self.inner = HashingEmbedder()
        self.fingerprint = self.inner.fingerprint
        self.floor = self.inner.floor
        self.down = True

    def embed(self, texts: list[str]) -> list[list[float]]:
        from bot.errors import MemoryError_

        if self.down:
            raise MemoryError_("embedding server unreachable")
        return self.inner.embed(texts)


async def test_embedding_outage_degrades_to_lexical_and_indexing_catches_up(tmp_path: Path) -> None:
    from bot.errors import MemoryError_
    from memory.store import HybridMemoryStore
    from memory.vector import ChromaIndex, connect_embedded

    emb = FlakyEmbedder()
    store = HybridMemoryStore(Transcript(tmp_path / "m.sqlite3"),
                              ChromaIndex(connect_embedded(tmp_path / "chroma"), emb.fingerprint), emb)  # fmt: skip
    try:
        await store.record(make("web:9", 1, "the spare key is under the blue flowerpot"))
        hits = await store.search("web:9", "spare key flowerpot", 3)
        assert [h.record.id for h in hits] == ["1"]  # recorded and found while the embedder is down
        with pytest.raises(MemoryError_):
            await store.flush()
        assert store.transcript.pending_count() == 1  # still marked, not lost
        emb.down = False
        await store.flush()
        assert store.transcript.pending_count() == 0 and store.index.count("web:9") == 1
    finally:
        await store.close()


def test_a_search_during_a_pais_first_write_finds_nothing_instead_of_failing(tmp_path: Path) -> None:
    # the first write of a pai makes its FTS table; a reader on another thread must not look for that table
    # before the write commits (under load: "no such table" / "vtable constructor failed" from a search)
    import threading

    t = Transcript(tmp_path / "memory.sqlite3")
    inside, go = threading.Event(), threading.Event()

    def held(rec: MemoryRecord) -> tuple[str, str]:  # runs inside the write transaction
        inside.set()
        assert go.wait(30)
        return index_text(rec)

    writer = threading.Thread(target=t.insert, args=([make("web:9", 1, "zebras at noon")], held))
    writer.start()
    try:
        assert inside.wait(30)
        assert t.term_counts("web:9", ["zebras"], 10) == [0]
        assert t.lexical("web:9", "zebras", 5, None) == []
    finally:
        go.set()
        writer.join()
    assert t.term_counts("web:9", ["zebras"], 10) == [1]
    t.close()
