"""A memory writer to be killed: ``python -m tests.reliability.memory_writer <data_dir> <first index>``.

Takes the data-directory lock like the bot, opens the memory store (printing ``open <records>``), then
records messages one by one through the ``MemoryStore`` API, printing ``ack <id>`` (flushed) after each
``record`` returned, i.e. once the store says the write is durable. Every tenth round it also searches, so
the kill can land in a read or in the background indexer as well as in a write.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import parse_settings
from bot.ports import MemoryRecord
from memory import acquire_data_dir_lock, open_memory

PAI = "web:kills"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int) -> MemoryRecord:
    return MemoryRecord(
        id=f"r{i}", pai=PAI, chat_key=PAI, author_id=f"u{i % 5}", author_name=f"Member{i % 5}",
        text=f"record {i}: the harbour festival plans, topic {i % 13}, lantern {i % 7}",
        sent_at=T0 + timedelta(seconds=i),
    )  # fmt: skip


async def main(data_dir: Path, first: int) -> None:
    settings = parse_settings(
        f"bot: {{data_dir: '{data_dir}'}}\nmemory: {{embedding: offline}}\nadapters: {{web: {{enabled: false}}}}\n"
    )
    lock = acquire_data_dir_lock(data_dir)
    store = await open_memory(settings)
    print(f"open {store.transcript.pending_count()}", flush=True)
    i = first
    while True:
        await store.record(record(i))
        print(f"ack r{i}", flush=True)
        if i % 10 == 0:
            await store.search(PAI, f"harbour festival topic {i % 13}", k=3)
        i += 1
    del lock  # pragma: no cover - runs until killed


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
