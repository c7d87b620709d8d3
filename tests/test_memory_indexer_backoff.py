"""A failing vector index never turns into a hot retry loop, and never floods the log with vectors."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from bot.config import parse_settings
from bot.ports import MemoryRecord
from memory import open_memory


class BrokenEmbedder:
    """Wraps the real embedder and fails every call, with an error text as long as chroma's can be."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.fingerprint = inner.fingerprint
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        raise ValueError("Expected embeddings to be a list of floats, got " + "0.123456, " * 5000)


async def test_records_arriving_during_an_indexing_failure_do_not_cut_the_backoff_short(tmp_path, caplog):
    settings = parse_settings(f"bot: {{data_dir: '{tmp_path}'}}\nmemory: {{embedding: offline}}")
    store = await open_memory(settings)
    broken = store.embedder = BrokenEmbedder(store.embedder)
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    caplog.set_level(logging.WARNING, logger="paibot")
    try:
        for i in range(60):  # a busy group: every record wakes the indexer
            await store.record(MemoryRecord(id=f"m{i}", pai="g", chat_key="g", author_id="a", author_name="Ann",
                                            text=f"message {i} about the venue", sent_at=t0 + timedelta(seconds=i)))
            await asyncio.sleep(0.02)
        hits = await store.search("g", "venue", k=3)
    finally:
        await store.close()
    print(f"[memory] embedding calls while failing for ~1.2 s under 60 records: {broken.calls}")
    assert broken.calls <= 4, broken.calls  # backoff 0.25-0.5 s, then 0.5-1 s, ...: a handful, not dozens
    assert hits, "search still answers from the lexical index"
    longest = max((len(r.getMessage()) for r in caplog.records), default=0)
    assert longest < 1000, longest
