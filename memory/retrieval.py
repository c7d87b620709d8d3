"""Hybrid retrieval: BM25 (FTS5) + dense vectors, fused and re-ranked for conversations.

The steps, each general (nothing here knows any benchmark):

1. Query analysis: content terms (stop words dropped, CJK as bigrams), and members named in the query.
2. Candidates: the pai's FTS5 BM25 top-N and the pai's chroma top-N. Dense hits are re-resolved through the
   transcript by ``(pai, id)`` with the filters applied again, so nothing outside the pai survives. The
   lexical side has a bounded cost at any history length: terms too common to rank over the whole history
   are ranked only among the most recent matches (``split_terms``).
3. Fusion: weighted reciprocal-rank fusion plus a share of each list's normalised score (ranks are robust to
   score scales; the score share keeps a confident lexical match ahead of a weak one).
4. Conversation-aware re-ranking: a turn gains part of its neighbours' scores (an answer often sits next to
   the turn that uses the query's words); turns written by a member the query names gain a boost; a small
   recency prior breaks near-ties in favour of newer messages.

Candidates are scored on light metadata rows (``transcript.Meta``); only the final k hits are read in full.

All functions here block; the store runs them on a worker thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.ports import MemoryHit, SearchFilters
from memory.textnorm import fts_match, normalise, query_terms
from memory.transcript import Meta, Transcript


@dataclass(frozen=True)
class RetrievalParams:
    candidates: int = 100
    rrf_k: float = 60.0
    w_lexical: float = 1.0
    # Defaults chosen on the LoCoMo dev split (5 conversations) by coarse ablation of these general knobs
    # (see bench/locomo.py); the feature-hashing dense side is weak, so it gets a small weight.
    w_dense: float = 0.3
    score_share: float = 2.0  # weight of min-max normalised scores next to reciprocal ranks
    neighbour_width: int = 2
    neighbour_weight: float = 0.5
    neighbour_pool: int = 40
    author_boost: float = 1.0
    recency_weight: float = 0.02
    dense_floor: float | None = None  # None = the embedder's own floor (below it a dense hit is noise)
    # Cost bounds of the lexical side (see ``split_terms``): postings ranked over the whole history, and how
    # many recent matches common terms are ranked among. A group of a few thousand messages never reaches
    # the budget, so its ranking is plain BM25.
    lexical_budget: int = 3000
    recent_window: int = 500


DenseSearch = Callable[[str, str, int, SearchFilters | None], list[tuple[str, float]]]
"""(pai, query, n, filters) -> [(record id, similarity)] best first, from the pai's own collection."""


def named_authors(query: str, authors: dict[str, str]) -> set[str]:
    """Author ids of members whose display name (or a word of it of 3+ letters) the query mentions."""
    q = normalise(query)
    qwords = set(re.findall(r"\w+", q))
    found: set[str] = set()
    for name, aid in authors.items():
        parts = [p for p in re.findall(r"\w+", name) if len(p) >= 3]
        if name and (name in q if len(name) >= 2 and not name.isascii() else name in qwords):
            found.add(aid)
        elif any(p in qwords for p in parts):
            found.add(aid)
    return found


def rank_fuse(lists: Sequence[tuple[Sequence[tuple[int, float]], float]], k: float, share: float) -> dict[int, float]:
    """Weighted reciprocal-rank fusion with a share of each list's min-max normalised score."""
    fused: dict[int, float] = {}
    for hits, weight in lists:
        if not hits or weight <= 0:
            continue
        top, low = hits[0][1], hits[-1][1]
        span = (top - low) or 1.0
        for rank, (key, score) in enumerate(hits):
            norm = (score - low) / span if top != low else 1.0
            fused[key] = fused.get(key, 0.0) + weight * (1.0 / (k + rank + 1) + share * norm / (k + 1))
    return fused


class HybridRetriever:
    """Runs the retrieval steps over one transcript and one dense search function."""

    def __init__(self, transcript: Transcript, dense: DenseSearch | None, params: RetrievalParams | None = None,
                 authors: Callable[[str], dict[str, str]] | None = None) -> None:  # fmt: skip
        self.transcript = transcript
        self.dense = dense
        self.params = params or RetrievalParams()
        self._authors = authors or transcript.author_names
        self.dense_floor = 0.0

    def search(self, pai: str, query: str, k: int, filters: SearchFilters | None = None) -> list[MemoryHit]:
        p = self.params
        terms = query_terms(query)
        if not terms:
            return []
        n = max(p.candidates, k)
        lexical = self.lexical(pai, terms, n, filters)
        metas: dict[int, Meta] = {}
        dense: list[tuple[int, float]] = []
        if self.dense is not None and p.w_dense > 0:
            found = self.dense(pai, query, n, filters)
            by_id = self.transcript.metas_by_ids(pai, [i for i, _ in found], filters)
            floor = p.dense_floor if p.dense_floor is not None else self.dense_floor
            dense = [(by_id[i].seq, s) for i, s in found if i in by_id and s >= floor]
            metas.update((m.seq, m) for m in by_id.values())
        fused = rank_fuse([(lexical, p.w_lexical), (dense, p.w_dense)], p.rrf_k, p.score_share)
        if not fused:
            return []
        metas.update(self.transcript.metas(pai, [s for s in fused if s not in metas]))
        fused = {s: v for s, v in fused.items() if s in metas}
        scores = self._rerank(pai, query, fused, metas, filters)
        best = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:k]
        rows = self.transcript.by_seqs(pai, [s for s, _ in best])  # only the hits are read in full
        return [MemoryHit(rows[s].record, round(v, 6)) for s, v in best if s in rows]

    def lexical(self, pai: str, terms: list[str], n: int, filters: SearchFilters | None) -> list[tuple[int, float]]:
        """BM25 candidates within a bounded cost (see ``split_terms``): the selective terms are ranked over
        the whole history; when common terms had to be set aside, all terms are also ranked over the most
        recent ``recent_window`` matching records, and each record keeps its better score."""
        p = self.params
        counts = self.transcript.term_counts(pai, terms, p.lexical_budget)
        selective, common = split_terms(terms, counts, p.lexical_budget)
        if not common:
            return self.transcript.lexical(pai, fts_match(selective), n, filters) if selective else []
        best: dict[int, float] = {}
        if selective:
            best.update(self.transcript.lexical(pai, fts_match(selective), n, filters))
        everything = fts_match(selective + common)
        start = self.transcript.window_start(pai, everything, p.recent_window, filters)
        for seq, score in self.transcript.lexical(pai, everything, n, filters, min_seq=start):
            best[seq] = max(best.get(seq, 0.0), score)
        return sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:n]

    def _rerank(self, pai: str, query: str, fused: dict[int, float], metas: dict[int, Meta],
                filters: SearchFilters | None) -> dict[int, float]:  # fmt: skip
        p = self.params
        scores = dict(fused)
        if p.neighbour_weight > 0 and p.neighbour_width > 0:
            pool = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)[: p.neighbour_pool]
            links = [
                (score, self.transcript.neighbour_seqs(pai, metas[seq].chat_key, seq, p.neighbour_width))
                for seq, score in pool
            ]
            missing = {nb for _, nbs in links for nb in nbs if nb not in metas}
            metas.update(self.transcript.metas(pai, list(missing)))
            for score, nbs in links:
                for nb in nbs:
                    if nb in metas and _passes(metas[nb], filters):
                        scores[nb] = scores.get(nb, 0.0) + p.neighbour_weight * score
        named = named_authors(query, self._authors(pai)) if p.author_boost > 0 else set()
        if named:
            for seq in scores:
                if metas[seq].author_id in named:
                    scores[seq] *= 1.0 + p.author_boost
        if p.recency_weight > 0 and scores:
            times = [metas[s].ts for s in scores]
            t0, t1 = min(times), max(times)
            if t1 > t0:
                for seq in scores:
                    age = (t1 - metas[seq].ts) / (t1 - t0)
                    scores[seq] *= 1.0 + p.recency_weight * math.exp(-3.0 * age)
        return scores


def split_terms(terms: Sequence[str], counts: Sequence[int], budget: int) -> tuple[list[str], list[str]]:
    """Split query terms into (selective, common) so that ranking stays cheap at any history length.

    FTS5 scores every posting of every term it is asked to rank, so a term most messages contain makes a
    query cost as much as the history is long, while adding almost nothing to BM25 (its IDF is near zero).
    Terms are taken rarest first while their document counts sum to at most ``budget`` (selective); the
    rest are common. Absent terms (count 0) are dropped. When everything fits, nothing is set aside and the
    result is exactly the plain BM25 query."""
    present = [(c, i, t) for i, (t, c) in enumerate(zip(terms, counts)) if c > 0]
    if sum(c for c, _, _ in present) <= budget:
        return [t for _, _, t in present], []
    selective: list[str] = []
    common: list[str] = []
    total = 0
    for c, _, t in sorted(present):
        if total + c <= budget:
            selective.append(t)
            total += c
        else:
            common.append(t)
    return selective, common


def _passes(m: Meta, f: SearchFilters | None) -> bool:
    """Whether a neighbour satisfies the search filters (neighbours come from outside the candidate query)."""
    if f is None:
        return True
    if (f.author_ids or f.author_names) and not (
        m.author_id in f.author_ids or m.author_name.casefold() in {n.casefold() for n in f.author_names}
    ):
        return False
    if f.kinds and m.kind not in f.kinds:
        return False
    if f.since is not None and m.ts < _aware(f.since).timestamp():
        return False
    return not (f.until is not None and m.ts >= _aware(f.until).timestamp())


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
