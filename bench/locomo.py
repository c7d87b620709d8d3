"""LoCoMo retrieval benchmark: replay conversations through the bot's real memory and score recall@k.

    python bench/locomo.py PATH/locomo-dev.json [--embedding EMB ...] [--param name=value ...]

EMB is any ``memory.embedding`` (offline, chroma-default, litellm:<model>, sentence-transformers:<model or
path>); repeat ``--embedding`` to score several memories next to one BM25 baseline in one run.

Method (as the data set's README describes): every conversation is replayed, in order, into its own group of
one memory (author = speaker, time = session date, text = turn text plus `` [shares image: <caption>]``);
then each question of categories 1-4 is asked of that group's ``search`` and scored by recall@k, the share
of its evidence turns among the top k hits (k = 5, 10, 20). A plain BM25 baseline over "author: text"
(lower-cased words, English stop words removed, k1 = 1.5, b = 0.75) is computed in the same run. Any hit from
another group is counted as a leak. The data is read from PATH and never copied.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import parse_settings  # noqa: E402
from bot.ports import MemoryRecord  # noqa: E402
from memory.retrieval import RetrievalParams  # noqa: E402
from memory.store import open_memory  # noqa: E402
from memory.textnorm import STOPWORDS  # noqa: E402

KS = (5, 10, 20)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


def session_time(text: str) -> datetime:
    """ "1:56 pm on 8 May, 2023" -> aware datetime (UTC)."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)


def turns_of(conv: dict[str, Any]) -> list[tuple[str, str, str, datetime]]:
    """(dia_id, speaker, text, time) in conversation order."""
    c = conv["conversation"]
    sessions = sorted((int(k.split("_")[1]), k) for k in c if re.fullmatch(r"session_\d+", k))
    out = []
    for _, key in sessions:
        when = session_time(c[f"{key}_date_time"])
        for t in c[key]:
            text = t["text"] + (f" [shares image: {t['blip_caption']}]" if t.get("blip_caption") else "")
            out.append((t["dia_id"], t["speaker"], text, when))
    return out


def evidence_ids(raw: list[str]) -> set[str]:
    """Normalise malformed evidence entries ("D8:6; D9:17", "D:11:26", "D30:05")."""
    out: set[str] = set()
    for item in raw:
        for part in re.split(r"[;,\s]+", item):
            m = re.fullmatch(r"D:?(\d+):(\d+)", part.strip())
            if m:
                out.add(f"D{int(m.group(1))}:{int(m.group(2))}")
    return out


class PlainBM25:
    """Okapi BM25 over "author: text", the baseline."""

    def __init__(self, docs: list[tuple[str, str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.ids = [d for d, _ in docs]
        self.tfs = [Counter(self.tokens(t)) for _, t in docs]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = sum(self.lens) / max(1, len(self.lens))
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}
        self.k1, self.b = k1, b

    @staticmethod
    def tokens(text: str) -> list[str]:
        return [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]

    def search(self, query: str, k: int) -> list[str]:
        q = set(self.tokens(query))
        scores = []
        for i, tf in enumerate(self.tfs):
            s = 0.0
            for w in q:
                f = tf.get(w)
                if f:
                    s += self.idf[w] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.lens[i] / self.avg))
            if s > 0:
                scores.append((s, i))
        scores.sort(reverse=True)
        return [self.ids[i] for _, i in scores[:k]]


def recall(hits: list[str], gold: set[str], k: int) -> float:
    return len(set(hits[:k]) & gold) / len(gold)


async def run(path: Path, embedding: str, params: RetrievalParams, data_dir: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    settings = parse_settings(
        f"bot:\n  data_dir: {data_dir}\nmemory:\n  embedding: '{embedding}'\nadapters:\n  web:\n    enabled: false\n"
    )
    store = await open_memory(settings, params)
    scores: dict[str, dict[str, list[float]]] = {"memory": defaultdict(list), "bm25": defaultdict(list)}
    leaks = questions = 0
    t_ingest = t_search = 0.0
    try:
        for conv in data:
            pai = f"locomo:{conv['sample_id']}"
            turns = turns_of(conv)
            recs = [MemoryRecord(id=d, pai=pai, chat_key=pai, author_id=s, author_name=s, text=t, sent_at=w)
                    for d, s, t, w in turns]  # fmt: skip
            t0 = time.perf_counter()
            await store.import_records(recs)
            await store.flush()
            t_ingest += time.perf_counter() - t0
            baseline = PlainBM25([(d, f"{s}: {t}") for d, s, t, _ in turns])
            for qa in conv["qa"]:
                if qa.get("category") not in CATEGORIES:
                    continue
                gold = evidence_ids(qa.get("evidence", []))
                if not gold:
                    continue
                questions += 1
                t0 = time.perf_counter()
                hits = await store.search(pai, qa["question"], max(KS))
                t_search += time.perf_counter() - t0
                leaks += sum(h.record.pai != pai for h in hits)
                mine = [h.record.id for h in hits]
                base = baseline.search(qa["question"], max(KS))
                for name, ranked in (("memory", mine), ("bm25", base)):
                    for k in KS:
                        scores[name][f"all@{k}"].append(recall(ranked, gold, k))
                        scores[name][f"{qa['category']}@{k}"].append(recall(ranked, gold, k))
    finally:
        await store.close()
    return {"scores": scores, "leaks": leaks, "questions": questions, "ingest_s": t_ingest, "search_s": t_search}


def report(results: list[tuple[str, dict[str, Any]]]) -> None:
    """One table: recall@k per category for each embedding's memory, and the plain BM25 baseline."""
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    first = results[0][1]
    names = [f"m{i + 1}" for i in range(len(results))]
    print(f"LoCoMo retrieval, {first['questions']} questions (categories 1-4)")
    for name, (emb, res) in zip(names, results):
        print(f"  {name} = memory with embedding={emb}: ingest {res['ingest_s']:.1f}s, search "
              f"{1000 * res['search_s'] / max(1, res['questions']):.1f} ms/question, leaks {res['leaks']}")  # fmt: skip
    print("  bm25 = plain BM25 baseline (same run)")
    cols = [*names, "bm25"]
    width = 7 * len(cols)
    print(f"{'':22}" + "".join(f"{'R@' + str(k):^{width}}" for k in KS))
    print(f"{'':22}" + "".join("".join(f"{c:>7}" for c in cols) for _ in KS))
    rows = [("all", "all")] + [(str(c), f"{c} {n}") for c, n in CATEGORIES.items()]
    for key, label in rows:
        n = len(first["scores"]["bm25"][f"{key}@5"])
        cells = ""
        for k in KS:
            vals = [mean(res["scores"]["memory"][f"{key}@{k}"]) for _, res in results]
            cells += "".join(f"{v:>7.3f}" for v in vals) + f"{mean(first['scores']['bm25'][f'{key}@{k}']):>7.3f}"
        print(f"{label + f' [{n}]':22}{cells}")
    b10 = mean(first["scores"]["bm25"]["all@10"])
    for name, (_, res) in zip(names, results):
        gain = mean(res["scores"]["memory"]["all@10"]) - b10
        print(f"{name}: recall@10 gain over the same-run BM25 baseline: {100 * gain:+.1f} points")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path)
    ap.add_argument("--embedding", action="append", default=[],
                    help="memory.embedding to evaluate (repeat to compare several in one run; default offline)")
    ap.add_argument("--param", action="append", default=[], help="RetrievalParams override, name=value")
    ap.add_argument("--data-dir", type=Path, help="keep the memory here (default: a temporary directory)")
    args = ap.parse_args(argv)
    params = RetrievalParams()
    for item in args.param:
        name, _, value = item.partition("=")
        params = dataclasses.replace(params, **{name: type(getattr(params, name) or 0.0)(value)})
    results = []
    for i, emb in enumerate(args.embedding or ["offline"]):
        if args.data_dir:
            results.append((emb, asyncio.run(run(args.path, emb, params, args.data_dir / str(i)))))
        else:
            with tempfile.TemporaryDirectory(prefix="locomo-") as tmp:
                results.append((emb, asyncio.run(run(args.path, emb, params, Path(tmp)))))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
