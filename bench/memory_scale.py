"""Memory at scale: ingest throughput and search latency of one large group, next to raw chromadb.

    python bench/memory_scale.py [--sizes 10000,100000] [--queries 200]

For each size N, N synthetic chat messages (Zipf-distributed vocabulary, a dozen authors) go into one group
of the real store (``import_records`` + background indexing to completion: SQLite transcript, FTS5, offline
embedding, chromadb), then ``search`` answers sampled queries. In the same run the same vectors are written
with raw ``collection.add`` into a bare chromadb directory and queried with raw ``collection.query``. It prints
messages/s and p50/p95 latencies with their ratios, and the size of each data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import parse_settings  # noqa: E402
from bot.ports import MemoryRecord  # noqa: E402
from memory.embedding import HashingEmbedder  # noqa: E402
from memory.store import _dir_size, embed_text, open_memory  # noqa: E402

T0 = datetime(2023, 1, 1, tzinfo=timezone.utc)


def corpus(n: int, rng: random.Random) -> list[MemoryRecord]:
    vocab = [f"{rng.choice('bcdfghjklmnpqrstvwz')}{rng.choice('aeiou')}{rng.choice('lmnrst')}{i}" for i in range(20_000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    authors = [f"member{i}" for i in range(12)]
    out = []
    for i in range(n):
        words = rng.choices(vocab, weights, k=rng.randint(4, 25))
        a = rng.choice(authors)
        out.append(MemoryRecord(id=str(i), pai="bench:big", chat_key="bench:big", author_id=a, author_name=a,
                                text=" ".join(words), sent_at=T0 + timedelta(seconds=30 * i)))  # fmt: skip
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


async def ours(recs: list[MemoryRecord], queries: list[str], data: Path) -> dict[str, float]:
    settings = parse_settings(f"bot:\n  data_dir: {data}\nadapters:\n  web:\n    enabled: false\n")
    store = await open_memory(settings)
    try:
        t0 = time.perf_counter()
        await store.import_records(recs, batch=2000)
        await store.flush()
        ingest = time.perf_counter() - t0
        lat = []
        for q in queries:
            t = time.perf_counter()
            await store.search("bench:big", q, 10)
            lat.append(time.perf_counter() - t)
    finally:
        await store.close()
    return {"rate": len(recs) / ingest, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95), "size": _dir_size(data)}


def raw(recs: list[MemoryRecord], vectors: list[list[float]], qvecs: list[list[float]], data: Path) -> dict[str, float]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(data), settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_or_create_collection("raw", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    step = min(5000, client.get_max_batch_size())
    t0 = time.perf_counter()
    for i in range(0, len(recs), step):
        col.add(ids=[r.id for r in recs[i : i + step]], embeddings=vectors[i : i + step])
    ingest = time.perf_counter() - t0
    lat = []
    for v in qvecs:
        t = time.perf_counter()
        col.query(query_embeddings=[v], n_results=10)
        lat.append(time.perf_counter() - t)
    client.close()
    return {"rate": len(recs) / ingest, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95), "size": _dir_size(data)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    emb = HashingEmbedder()
    print(f"{'N':>8} {'ingest msg/s':>14} {'raw msg/s':>10} {'ratio':>6} | {'p50 ms':>7} {'p95 ms':>7} "
          f"{'raw p50':>8} {'raw p95':>8} {'p95 ratio':>9} | {'data dir':>9} {'raw dir':>8}")  # fmt: skip
    for n in (int(s) for s in args.sizes.split(",")):
        rng = random.Random(args.seed)
        recs = corpus(n, rng)
        queries = [" ".join(rng.choice(recs).text.split()[:3]) for _ in range(args.queries)]
        vectors = emb.embed([embed_text(r) for r in recs])
        qvecs = emb.embed(queries)
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            mine = asyncio.run(ours(recs, queries, Path(a)))
            base = raw(recs, vectors, qvecs, Path(b))
        mb = 1024 * 1024
        print(f"{n:>8} {mine['rate']:>14.0f} {base['rate']:>10.0f} {mine['rate'] / base['rate']:>6.2f} | "
              f"{1000 * mine['p50']:>7.1f} {1000 * mine['p95']:>7.1f} {1000 * base['p50']:>8.1f} "
              f"{1000 * base['p95']:>8.1f} {mine['p95'] / base['p95']:>9.1f} | {mine['size'] / mb:>7.0f}MB "
              f"{base['size'] / mb:>6.0f}MB", flush=True)  # fmt: skip
    print("ingest = import + FTS5 + offline embedding + chromadb, to completion; raw = chromadb add of the same "
          "precomputed vectors. search = hybrid (FTS5 + dense + re-ranking) vs raw chromadb query.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
