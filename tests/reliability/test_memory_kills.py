"""The memory store survives SIGKILLs during writes: a writer process records messages through the
``MemoryStore`` API and prints each id once ``record`` returned; it is killed at a random moment (seeded),
again and again. After every kill the store opens (the next writer opens it), the transcript passes
SQLite's integrity check and holds every acknowledged write. At the end the vector index is broken
(deleted, then overwritten with garbage) and rebuilt from the transcript: search finds the records again.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from memory.store import open_memory
from tests.reliability.harness import ROOT, env_int, figure, read_db, run_seed, transcript_ids
from tests.reliability.memory_writer import PAI
from tests.test_memory_contract import settings_for

pytestmark = pytest.mark.slow


async def one_life(data: Path, first: int, rng: random.Random, logs: Path) -> tuple[list[str], bool]:
    """Start a writer, let it write for a random while, SIGKILL it. Returns (acknowledged ids, opened)."""
    with open(logs, "ab") as err:  # noqa: ASYNC230 - a local log file, instant
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.memory_writer", str(data), str(first),
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd=ROOT,
        )  # fmt: skip
    assert proc.stdout is not None
    acked: list[str] = []
    opened = False

    async def read() -> None:
        nonlocal opened
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode().strip()
            if line.startswith("open"):
                opened = True
            elif line.startswith("ack "):
                acked.append(line[4:])

    reader = asyncio.create_task(read(), name="writer-stdout")
    try:
        async def until_open() -> None:
            while not opened and proc.returncode is None:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_open(), 60)
        await asyncio.sleep(rng.uniform(0.0, 0.6))  # somewhere in the writes (and the indexer's work)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await asyncio.wait_for(reader, 10)  # what was printed before the kill is still in the pipe
    return acked, opened


def integrity(data: Path) -> str:
    with read_db(data / "memory.sqlite3") as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def rebuilt_search(data: Path, kept: set[str]) -> tuple[int, int, str]:
    """Open the store, let the index catch up; returns (vectors in the index, hits for a query, and what
    differs between the index and the transcript, for the failure message)."""
    mem = await open_memory(settings_for(data))  # type: ignore[arg-type]
    try:
        await mem.flush()
        hits = await mem.search(PAI, "harbour festival lantern", 5)
        count = mem.index.count(PAI)
        ids = await asyncio.to_thread(mem.index.ids, PAI)
        diff = f"index-only {sorted(set(ids) - kept)[:10]}, transcript-only {sorted(kept - set(ids))[:10]}"
        if len(ids) != len(set(ids)):
            diff += f", repeated ids {len(ids) - len(set(ids))}"
        return count, len(hits), diff
    finally:
        await mem.close()


async def run_scenario(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "data"
    started = time.monotonic()
    acked: set[str] = set()
    missing_after: list[int] = []
    failed_opens = 0
    next_id = 0
    for life in range(kills):
        got, opened = await one_life(data, next_id, rng, tmp_path / "writer.log")
        failed_opens += 0 if opened else 1
        acked.update(got)
        next_id += len(got) + 1  # the id being written at the kill may or may not be there: skip it
        kept = transcript_ids(data).get(PAI, set())
        if not acked <= kept:
            missing_after.append(life)
        assert integrity(data) == "ok", f"transcript damaged after kill {life + 1}"
    kept = transcript_ids(data).get(PAI, set())
    broken_aside = len(list(data.glob("chroma.broken-*")))

    vectors_before, _, diff_before = await rebuilt_search(data, kept)
    shutil.rmtree(data / "chroma")
    vectors_deleted, hits_deleted, diff_deleted = await rebuilt_search(data, kept)
    for f in (data / "chroma").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00not a database" * 64)
    vectors_corrupt, hits_corrupt, diff_corrupt = await rebuilt_search(data, kept)
    line = figure(
        "memory kills", seed=seed, kills=kills, failed_opens=failed_opens, acknowledged=len(acked),
        lost=len(acked - kept), kills_with_a_loss=len(missing_after), records=len(kept),
        index_dirs_set_aside_during_kills=broken_aside,
        vectors_after_delete=f"{vectors_deleted}/{len(kept)}", hits_after_delete=hits_deleted,
        vectors_after_corruption=f"{vectors_corrupt}/{len(kept)}", hits_after_corruption=hits_corrupt,
        seconds=round(time.monotonic() - started),
    )  # fmt: skip
    assert failed_opens == 0, line + "\n" + (tmp_path / "writer.log").read_text(errors="replace")[-3000:]
    assert acked and acked <= kept and missing_after == [], line
    assert vectors_before == len(kept), f"{line}\nafter the kills: {diff_before}"
    assert vectors_deleted == len(kept) and hits_deleted == 5, f"{line}\nafter deleting the index: {diff_deleted}"
    assert vectors_corrupt == len(kept) and hits_corrupt == 5, f"{line}\nafter corrupting the index: {diff_corrupt}"


async def test_memory_store_survives_kills_during_writes_and_rebuilds_a_broken_index(tmp_path: Path) -> None:
    await run_scenario(tmp_path, kills=12, seed=run_seed())


@pytest.mark.soak
async def test_soak_memory_store_survives_200_kills(tmp_path: Path) -> None:
    await run_scenario(tmp_path, kills=env_int("PAIBOT_SOAK_MEMORY_KILLS", 200), seed=run_seed())
