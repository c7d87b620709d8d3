"""Conversational-memory retrieval benchmark (LoCoMo, kdconv-mem): replay conversations through the bot's
real memory and score recall@k, against same-run BM25 baselines.

    python bench/locomo.py PATH.json [PATH2.json ...] [--embedding EMB ...] [--param name=value ...]
                           [--ablate] [--floor] [--per-conversation]

PATH is LoCoMo's ``locomo-dev.json`` or kdconv-mem's ``kdconv-mem-dev.json`` (same format). EMB is any
``memory.embedding``; repeat ``--embedding`` to compare several memories in one run.

Method (as the data sets' READMEs describe): every conversation is imported, in order, into its own group of
one memory (author = speaker, time = session date, text = turn text plus `` [shares image: <caption>]``);
then each question of categories 1-4 is asked of that group's ``search`` and scored by recall@k, the share
of its evidence turns among the top k hits (k = 5, 10, 20). Any hit from another group is a leak. The data
is read from PATH and never copied. Recall is scored with the relevance floor off (``floor=0``): what a
question costs when the floor wrongly says "not found" is reported by ``--floor``.

Same-run baselines (bm25s, Okapi BM25 k1 = 1.5, b = 0.75, over "author: text"):

- ``bm25``: English words lower-cased, the memory's English stop words removed, Snowball-stemmed
  (PyStemmer); Chinese split into words by jieba (rjieba). A fair lexical baseline in both languages.
- ``bm25+ctx``: the same, each turn indexed together with its previous four turns (the context baseline the
  kdconv-mem README describes).

``--ablate`` scores the memory with each part switched off (or on) in turn, in the same run: what each part
adds. What is indexed (how many turns make a turn's far context) cannot be switched at search time:
``--context-turns N`` indexes with another number, for a separate run. Search latency is printed as mean, p50
and p95 over the questions. ``--floor`` calibrates the relevance floor: LoCoMo's category-5 (adversarial) questions have no evidence
in the conversation and are the negatives; for each candidate floor it prints the precision of "not found"
(the share of questions answered "not found" that are unanswerable) and the recall@10 it costs on the
answerable ones, then picks the floor leave-one-conversation-out (chosen on the other conversations, scored
on the one left out) so the figure says how the choice generalises; it does so twice, with the named-member
check (``RetrievalParams.named_check``) and without it, same run. ``--per-conversation`` prints recall@10
per conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import parse_settings  # noqa: E402
from bot.ports import MemoryRecord  # noqa: E402
from memory import fts  # noqa: E402
from memory.fts import Weights  # noqa: E402
from memory.retrieval import RetrievalParams  # noqa: E402
from memory.store import HybridMemoryStore, open_memory  # noqa: E402
from memory.textnorm import STOPWORDS  # noqa: E402

KS = (5, 10, 20)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
UNANSWERABLE = 5

# What --ablate switches, one at a time, against the memory as configured.
ABLATIONS: dict[str, dict[str, Any]] = {
    "- context columns": {"weights": Weights(prev=0.0, far=0.0)},
    "- far context": {"weights": Weights(far=0.0)},
    "- answer after question": {"answer_weight": 0.0},
    "- author boost": {"author_boost": 0.0},
    "- date boost": {"date_boost": 0.0},
    "- when boost": {"when_boost": 0.0},
    "- date candidates": {"date_candidates": False},
    "+ dense side (0.3)": {"w_dense": 0.3},
    "+ neighbours (2, 0.5)": {"neighbour_width": 2, "neighbour_weight": 0.5},
    "+ recency (0.02)": {"recency_weight": 0.02},
}


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


def questions_of(conv: dict[str, Any], with_unanswerable: bool = False) -> list[tuple[str, int, set[str]]]:
    """(question, category, evidence) of categories 1-4 (and 5, when asked) with evidence."""
    out = []
    for qa in conv["qa"]:
        cat = qa.get("category")
        gold = evidence_ids(qa.get("evidence", []))
        if cat in CATEGORIES and gold:
            out.append((qa["question"], cat, gold))
        elif with_unanswerable and cat == UNANSWERABLE:
            out.append((qa["question"], cat, gold))
    return out


class Tokenizer:
    """The baselines' tokenizer: stemmed English words without stop words, and jieba words for Chinese."""

    def __init__(self) -> None:
        import rjieba
        import Stemmer

        self._stem = Stemmer.Stemmer("english").stemWord
        self._cut = rjieba.cut
        self._stop = set(STOPWORDS)  # the memory's own list (bm25s's longer one scores lower here)

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for m in re.finditer(r"([\u3400-\u9fff]+)|([^\W\u3400-\u9fff]+)", text.lower()):
            if m.group(1):
                out.extend(w for w in self._cut(m.group(1)) if w.strip())
            elif m.group(2) not in self._stop:
                out.append(self._stem(m.group(2)))
        return out


class BM25Baseline:
    """bm25s over pre-tokenized documents (``context`` previous turns indexed with each turn)."""

    def __init__(self, tokenize: Tokenizer, turns: list[tuple[str, str, str, datetime]], context: int = 0) -> None:
        import bm25s

        self.tokenize = tokenize
        self.ids = [d for d, _, _, _ in turns]
        own = [tokenize(f"{s}: {t}") for _, s, t, _ in turns]
        docs = [sum(own[max(0, i - context) : i], []) + own[i] for i in range(len(own))]
        self.index = bm25s.BM25(k1=1.5, b=0.75)
        self.index.index([d or ["\x00"] for d in docs], show_progress=False)

    def search(self, query: str, k: int) -> list[str]:
        q = [t for t in self.tokenize(query) if t in self.index.vocab_dict]
        if not q:
            return []
        docs, scores = self.index.retrieve([q], k=min(k, len(self.ids)), show_progress=False)
        return [self.ids[int(i)] for i, s in zip(docs[0], scores[0]) if s > 0]


def recall(hits: list[str], gold: set[str], k: int) -> float:
    return len(set(hits[:k]) & gold) / len(gold)


@dataclass
class Asked:
    conv: str
    category: int
    gold: set[str]
    ranked: dict[str, list[str]]  # system -> ids best first
    relevance: float = 0.0
    relevance_without_name_check: float = 0.0


async def ingest(store: HybridMemoryStore, data: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    for conv in data:
        pai = f"locomo:{conv['sample_id']}"
        recs = [MemoryRecord(id=d, pai=pai, chat_key=pai, author_id=s, author_name=s, text=t, sent_at=w)
                for d, s, t, w in turns_of(conv)]  # fmt: skip
        await store.import_records(recs)
    await store.flush()
    return time.perf_counter() - t0


async def ask_all(store: HybridMemoryStore, data: list[dict[str, Any]], params: RetrievalParams,
                  name: str, asked: dict[tuple[str, str], Asked] | None = None) -> tuple[dict[tuple[str, str], Asked], int, list[float]]:  # fmt: skip
    """Ask every question (floor off); returns the answers by (conversation, question), leaks, and each
    search's seconds."""
    store.retriever.params = dataclasses.replace(params, floor=0.0)
    asked = asked if asked is not None else {}
    leaks = 0
    t_search: list[float] = []
    for conv in data:
        pai = f"locomo:{conv['sample_id']}"
        for question, cat, gold in questions_of(conv, with_unanswerable=True):
            t0 = time.perf_counter()
            hits, relevance = await asyncio.to_thread(store.retriever.ranked, pai, question, max(KS))
            t_search.append(time.perf_counter() - t0)
            leaks += sum(h.record.pai != pai for h in hits)
            entry = asked.setdefault((conv["sample_id"], question), Asked(conv["sample_id"], cat, gold, {}))
            entry.ranked[name] = [h.record.id for h in hits]
            if name == "memory":
                entry.relevance = relevance
            elif name == NO_NAME_CHECK:
                entry.relevance_without_name_check = relevance
    return asked, leaks, t_search


def baselines(data: list[dict[str, Any]], asked: dict[tuple[str, str], Asked]) -> None:
    tokenize = Tokenizer()
    for conv in data:
        turns = turns_of(conv)
        plain, ctx = BM25Baseline(tokenize, turns), BM25Baseline(tokenize, turns, context=4)
        for question, cat, gold in questions_of(conv, with_unanswerable=True):
            entry = asked.setdefault((conv["sample_id"], question), Asked(conv["sample_id"], cat, gold, {}))
            entry.ranked["bm25"] = plain.search(question, max(KS))
            entry.ranked["bm25+ctx"] = ctx.search(question, max(KS))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def table(asked: list[Asked], systems: list[str]) -> None:
    answerable = [a for a in asked if a.category in CATEGORIES]
    width = 9
    print(f"{'':24}" + "".join(f"{'R@' + str(k):^{width * len(systems)}}" for k in KS))
    print(f"{'':24}" + "".join("".join(f"{s[:width - 1]:>{width}}" for s in systems) for _ in KS))
    rows = [("all", answerable)] + [(f"{c} {n}", [a for a in answerable if a.category == c]) for c, n in CATEGORIES.items()]
    for label, group in rows:
        if not group:
            continue
        cells = "".join(
            "".join(f"{mean([recall(a.ranked.get(s, []), a.gold, k) for a in group]):>{width}.3f}" for s in systems)
            for k in KS
        )
        print(f"{label + f' [{len(group)}]':24}{cells}")


def per_conversation(asked: list[Asked], systems: list[str]) -> None:
    convs = sorted({a.conv for a in asked})
    print("recall@10 per conversation: " + "  ".join(systems))
    for c in convs:
        group = [a for a in asked if a.conv == c and a.category in CATEGORIES]
        print(f"  {c:<16}" + "".join(f"{mean([recall(a.ranked.get(s, []), a.gold, 10) for a in group]):>9.3f}" for s in systems))


NO_NAME_CHECK = "floor without the named-member check"


def floor_report(asked: list[Asked]) -> None:
    """Precision of "not found" and the recall@10 it costs, per candidate floor; then the floor picked
    leave-one-conversation-out."""
    negatives = [a for a in asked if a.category == UNANSWERABLE]
    positives = [a for a in asked if a.category in CATEGORIES]
    if not positives:
        return
    base = mean([recall(a.ranked["memory"], a.gold, 10) for a in positives])
    candidates = [round(0.05 * i, 2) for i in range(0, 15)]

    def at(floor: float, group: list[Asked]) -> tuple[int, int, float]:
        """(unanswerable said "not found", answerable said "not found", recall@10 with the floor)"""
        neg = sum(a.relevance < floor for a in group if a.category == UNANSWERABLE)
        pos = [a for a in group if a.category in CATEGORIES]
        lost = sum(a.relevance < floor for a in pos)
        r = mean([0.0 if a.relevance < floor else recall(a.ranked["memory"], a.gold, 10) for a in pos])
        return neg, lost, r

    print(f"\nrelevance floor ({len(negatives)} unanswerable, {len(positives)} answerable questions; "
          f"recall@10 without a floor {base:.3f})")  # fmt: skip
    print(f"{'floor':>6} {'not found':>10} {'precision':>10} {'unansw. caught':>15} {'R@10':>7} {'cost':>7}")
    for f in candidates:
        neg, lost, r = at(f, asked)
        said = neg + lost
        prec = neg / said if said else float("nan")
        print(f"{f:>6.2f} {said:>10} {prec:>10.3f} {neg / max(1, len(negatives)):>15.3f} {r:>7.3f} {base - r:>7.3f}")
    convs = sorted({a.conv for a in asked})
    if len(convs) < 2 or not negatives:
        return
    # choose on the others: the highest floor costing at most 1% of recall@10 there
    picked: list[tuple[str, float]] = []
    neg = lost = 0
    recalls: list[float] = []
    for c in convs:
        train = [a for a in asked if a.conv != c]
        test = [a for a in asked if a.conv == c]
        train_base = mean([recall(a.ranked["memory"], a.gold, 10) for a in train if a.category in CATEGORIES])
        ok = [f for f in candidates if train_base - at(f, train)[2] <= 0.01]
        f = max(ok) if ok else 0.0
        picked.append((c, f))
        n, lo, _ = at(f, test)
        neg, lost = neg + n, lost + lo
        recalls += [0.0 if a.relevance < f else recall(a.ranked["memory"], a.gold, 10)
                    for a in test if a.category in CATEGORIES]  # fmt: skip
    said = neg + lost
    print("leave-one-conversation-out (floor = highest costing <= 0.01 recall@10 on the other conversations): "
          + ", ".join(f"{c}={f:.2f}" for c, f in picked))
    print(f"  not found {said}, precision {neg / said if said else float('nan'):.3f}, unanswerable caught "
          f"{neg / len(negatives):.3f}, recall@10 {mean(recalls):.3f} (cost {base - mean(recalls):.3f})")


async def run(paths: list[Path], embedding: str, params: RetrievalParams, data_dir: Path, ablate: bool,
              floor: bool = False) -> tuple[dict[tuple[str, str], Asked], dict[str, Any]]:  # fmt: skip
    data = [conv for p in paths for conv in json.loads(p.read_text(encoding="utf-8"))]
    settings = parse_settings(
        f"bot:\n  data_dir: {data_dir}\nmemory:\n  embedding: '{embedding}'\nadapters:\n  web:\n    enabled: false\n"
    )
    store = await open_memory(settings, params)
    try:
        ingest_s = await ingest(store, data)
        asked, leaks, search_s = await ask_all(store, data, params, "memory")
        search_s.sort()
        if ablate:
            for name, change in ABLATIONS.items():
                await ask_all(store, data, dataclasses.replace(params, **change), name, asked)
        if floor:  # the relevance the floor would see without the named-member check, same run
            await ask_all(store, data, dataclasses.replace(params, named_check=0.0), NO_NAME_CHECK, asked)
    finally:
        await store.close()
    p50 = 1000 * search_s[len(search_s) // 2] if search_s else float("nan")
    p95 = 1000 * search_s[int(len(search_s) * 0.95)] if search_s else float("nan")
    info = {"ingest_s": ingest_s, "search_ms": 1000 * sum(search_s) / max(1, len(search_s)), "p50_ms": p50,
            "p95_ms": p95, "leaks": leaks, "data": data}  # fmt: skip
    return asked, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", type=Path, nargs="+")
    ap.add_argument("--embedding", action="append", default=[],
                    help="memory.embedding to evaluate (repeat to compare several in one run; default offline)")
    ap.add_argument("--param", action="append", default=[], help="RetrievalParams override, name=value")
    ap.add_argument("--ablate", action="store_true", help="score each part switched off/on in turn")
    ap.add_argument("--floor", action="store_true", help="calibrate the relevance floor (needs category 5)")
    ap.add_argument("--per-conversation", action="store_true")
    ap.add_argument("--context-turns", type=int, default=0,
                    help="turns before the previous one that make a turn's far context (default: the memory's, "
                         f"{fts.FAR}); changes what is indexed, so it is compared in separate runs")  # fmt: skip
    args = ap.parse_args(argv)
    if args.context_turns:
        fts.FAR = args.context_turns
    params = RetrievalParams()
    for item in args.param:
        name, _, value = item.partition("=")
        if name.startswith("weights."):
            params = dataclasses.replace(params, weights=dataclasses.replace(params.weights, **{name[8:]: float(value)}))
        else:
            current = getattr(params, name)
            params = dataclasses.replace(params, **{name: type(current if current is not None else 0.0)(value)})
    embeddings = args.embedding or ["offline"]
    merged: dict[tuple[str, str], Asked] = {}
    systems: list[str] = []
    info: dict[str, Any] = {}
    for i, emb in enumerate(embeddings):
        with tempfile.TemporaryDirectory(prefix="locomo-") as tmp:
            asked, info = asyncio.run(run(args.paths, emb, params, Path(tmp), args.ablate and i == 0,
                                          args.floor and i == 0))
        label = "memory" if len(embeddings) == 1 else f"m{i + 1}"
        for key, a in asked.items():
            entry = merged.setdefault(key, dataclasses.replace(a, ranked={}))
            for name, ranked in a.ranked.items():
                entry.ranked[label if name == "memory" else name] = ranked
        systems.append(label)
        print(f"{label} = memory with embedding={emb}: ingest {info['ingest_s']:.1f}s, search "
              f"{info['search_ms']:.1f} ms/question (p50 {info['p50_ms']:.1f} ms, p95 {info['p95_ms']:.1f} ms),"
              f" leaks {info['leaks']}")  # fmt: skip
    baselines(info["data"], merged)
    asked_list = list(merged.values())
    n = sum(1 for a in asked_list if a.category in CATEGORIES)
    names = ", ".join(p.name for p in args.paths)
    print(f"{names}: {n} questions (categories 1-4); baselines bm25 (stemmed English, jieba Chinese) and bm25+ctx "
          "(each turn with its previous four), same run")  # fmt: skip
    if args.ablate:
        print("ablations: " + "; ".join(f"a{i + 1} = {name}" for i, name in enumerate(ABLATIONS)))
        for i, name in enumerate(ABLATIONS):
            for a in asked_list:
                if name in a.ranked:
                    a.ranked[f"a{i + 1}"] = a.ranked.pop(name)
    cols = systems + ([f"a{i + 1}" for i in range(len(ABLATIONS))] if args.ablate else []) + ["bm25", "bm25+ctx"]
    table(asked_list, cols)
    answerable = [a for a in asked_list if a.category in CATEGORIES]
    b10 = mean([recall(a.ranked["bm25"], a.gold, 10) for a in answerable])
    for s in cols[:-2]:
        gain = mean([recall(a.ranked.get(s, []), a.gold, 10) for a in answerable]) - b10
        print(f"{s}: recall@10 {gain * 100:+.1f} points over the same-run stemmed BM25")
    if args.per_conversation:
        per_conversation(asked_list, cols)
    if args.floor:
        if len(embeddings) > 1:
            print("(floor calibrated on m1)")
            for a in asked_list:
                a.ranked["memory"] = a.ranked["m1"]
        print("\nwith the named-member check (shipped):")
        floor_report(asked_list)
        print("\nwithout the named-member check (relevance of the best hits only):")
        floor_report([dataclasses.replace(a, relevance=a.relevance_without_name_check) for a in asked_list])
    return 0


if __name__ == "__main__":
    sys.exit(main())
