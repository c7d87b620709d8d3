"""Search over one pai: what a query finds, in what order, and when the answer is "not found".

1. Query analysis: terms (``memory.textnorm``: stemmed words, jieba words for Chinese, stop words dropped),
   members the query names, dates it names (``memory.querytime``).
2. Evidence first. Members' statements, file chunks and image captions are ranked by BM25 over the pai's
   evidence table, whose rows carry the turns before them as weighted context columns (``memory.fts``): a
   reply that does not name its subject is found through the turn that did. Questions put to the bot come
   from a separate table, their scores scaled down (``question_weight``), and a question that repeats the
   query itself is dropped: a question is not evidence for its own answer, and asking it again and again
   never crowds out the statement it asks about. The bot's own messages and commands are offered only when
   asked for (a ``SearchFilters.kinds`` that names them), and the bot's messages also when the query names
   the bot ("what did Pai say about the venue?").
3. Dense candidates (the pai's vectors) join through weighted reciprocal-rank fusion when the embedder earns
   a weight (``Embedder.weight``; the offline feature-hashing embedding measured no gain and has weight 0).
   Dense hits are re-resolved through the transcript by ``(pai, id)`` with the filters applied again, so
   nothing outside the pai survives. The lexical side has a bounded cost at any history length: terms too
   common to rank over the whole history are ranked only among the most recent matches (``split_terms``).
4. Conversation-aware re-ranking: the turn after a question turn ("who is your favourite team?") gains part
   of its score (``answer_weight``); turns by a member the query names gain (``author_boost``), and so do
   turns from a date the query names (``date_boost``; such a query also ranks its words among that date's
   turns, ``date_candidates``) and, for a question asking "when", turns that say a time (``when_boost``).
5. Relevance floor: a result list whose best hits hold too small a share of the query's terms (weighted by
   rarity) is no answer at all: search returns nothing, and callers say "not found" (``floor``; calibrated on
   the LoCoMo dev split with its unanswerable questions as negatives, see ``bench/locomo.py``). A query that
   names members must also find its other words in a turn of theirs among the hits (``named_check``): the
   same words said by someone else are no answer about them.

Every part was kept because its ablation on the dev splits showed a gain (``bench/locomo.py --ablate``).
Candidates are scored on light metadata rows (``transcript.Meta``); only the final k hits are read in full.

All functions here block; the store runs them on a worker thread.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from bot.ports import BOT, EVIDENCE_KINDS, QUESTION, MemoryHit, SearchFilters
from memory.fts import Weights
from memory.querytime import is_date_word, query_spans, within
from memory.textnorm import fold, fts_match, query_terms
from memory.transcript import Meta, Transcript


@dataclass(frozen=True)
class RetrievalParams:
    candidates: int = 100
    weights: Weights = field(default_factory=Weights)
    w_dense: float | None = None  # None = the embedder's own weight
    rrf_k: float = 60.0
    score_share: float = 2.0  # weight of min-max normalised scores next to reciprocal ranks (dense fusion)
    answer_weight: float = 0.3  # share of a question turn's score given to the turn after it
    answer_pool: int = 50
    neighbour_width: int = 0  # symmetric neighbour propagation (measured: no gain over the context columns)
    neighbour_weight: float = 0.0
    neighbour_pool: int = 40
    author_boost: float = 1.0
    date_boost: float = 1.0
    date_slack_s: float = 86400.0  # a named day also matches a day either side (time zones)
    recency_weight: float = 0.0
    # A "when" question ("When did ...", "What year ...", "什么时候") is answered by a turn that says a time
    # ("yesterday", "last May", "2022", "上周"): such turns gain (``asks_when``, ``memory.querytime.says_time``).
    when_boost: float = 1.0
    # A query naming a date also ranks its words among the turns from then (a day either side): a turn the
    # date boost would lift is not lost for lying beyond the first ``candidates`` of the whole history.
    date_candidates: bool = True
    question_weight: float = 0.3  # a member's question to the bot ranks below statements
    repeat_share: float = 0.8  # a question holding this share of the query's terms repeats it: dropped
    floor: float = 0.20  # least share of the query's term weight the best hits must hold; 0 = no floor
    floor_hits: int = 3  # how many of the best hits the floor looks at
    # A query naming members ("What did Caroline realize after her charity race?") is relevant only when a
    # turn of theirs among the best hits holds its other words: the same words said by someone else are no
    # answer about her (see ``relevance``). 0 = off.
    named_check: float = 1.0
    dense_floor: float | None = None  # None = the embedder's own floor (below it a dense hit is noise)
    dense_relevance: float | None = None  # a dense hit this similar passes the floor (None: 1.5 x dense floor)
    # Cost bounds of the lexical side (see ``split_terms``): postings ranked over the whole history, and how
    # many recent matches common terms are ranked among. A group of a few thousand messages never reaches
    # the budget, so its ranking is plain BM25.
    lexical_budget: int = 3000
    recent_window: int = 500


DenseSearch = Callable[[str, str, int, SearchFilters | None], list[tuple[str, float]]]
"""(pai, query, n, filters) -> [(record id, similarity)] best first, from the pai's own collection."""


def named_authors(query: str, authors: dict[str, str]) -> set[str]:
    """Author ids of members whose display name (or a word of it of 3+ letters) the query mentions."""
    q = fold(query)
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


@dataclass
class _Query:
    text: str
    terms: list[str]
    counts: list[int]  # evidence rows holding each term (capped)
    named: set[str]
    spans: list[tuple[float, float]]


class HybridRetriever:
    """Runs the retrieval steps over one transcript and one dense search function."""

    def __init__(self, transcript: Transcript, dense: DenseSearch | None, params: RetrievalParams | None = None,
                 authors: Callable[[str], dict[str, str]] | None = None,
                 bot_ids: Callable[[str], set[str]] | None = None) -> None:  # fmt: skip
        self.transcript = transcript
        self.dense = dense
        self.params = params or RetrievalParams()
        self._authors = authors or transcript.author_names
        self._bot_ids = bot_ids or transcript.bot_ids
        self.dense_floor = 0.0
        self.dense_weight = 0.3  # the embedder's weight (set by the store); params.w_dense overrides it
        self._sizes: dict[str, tuple[float, int]] = {}

    # ------------------------------------------------------------------ search

    def search(self, pai: str, query: str, k: int, filters: SearchFilters | None = None) -> list[MemoryHit]:
        """The best ``k`` hits, or none when they do not pass the relevance floor ("not found")."""
        hits, relevance = self.ranked(pai, query, k, filters)
        return hits if relevance >= self.params.floor else []

    def ranked(self, pai: str, query: str, k: int, filters: SearchFilters | None = None) -> tuple[list[MemoryHit], float]:
        """The best ``k`` hits and their relevance (see ``relevance``; 1.0 when a dense hit is close)."""
        p = self.params
        terms = query_terms(query)
        if not terms:
            return [], 0.0
        n = max(p.candidates, k)
        counts = self.transcript.term_counts(pai, terms, p.lexical_budget)
        q = _Query(query, terms, counts, named_authors(query, self._authors(pai)), query_spans(query))
        evidence, others = self._kinds(pai, q, filters)
        metas: dict[int, Meta] = {}
        lexical: dict[int, float] = {}
        if evidence:
            ev_filters = _evidence_filters(filters, evidence)
            lexical.update(self.lexical(pai, terms, n, ev_filters, counts=counts))
            if p.date_candidates and q.spans and p.date_boost > 0:
                for since, until in q.spans[:3]:
                    span = _within_span(ev_filters, since - p.date_slack_s, until + p.date_slack_s)
                    for seq, v in self.lexical(pai, terms, n, span, counts=counts):
                        lexical[seq] = max(lexical.get(seq, 0.0), v)
        if others:
            as_evidence = filters is None or not filters.kinds  # questions weighed as (weak) evidence
            lexical.update(self._others(pai, q, n, _with_kinds(filters, others), metas, as_evidence))
        scores = lexical
        w_dense = self.dense_weight if p.w_dense is None else p.w_dense
        close = False  # whether a dense hit is similar enough to count as relevant on its own
        if self.dense is not None and w_dense > 0 and evidence:
            found = self.dense(pai, query, n, _with_kinds(filters, evidence))
            by_id = self.transcript.metas_by_ids(pai, [i for i, _ in found], _with_kinds(filters, evidence))
            floor = p.dense_floor if p.dense_floor is not None else self.dense_floor
            dense = [(by_id[i].seq, s) for i, s in found if i in by_id and s >= floor]
            metas.update((m.seq, m) for m in by_id.values())
            relevant = p.dense_relevance if p.dense_relevance is not None else 1.5 * floor
            close = bool(dense) and max(v for _, v in dense) >= relevant
            ranked = sorted(lexical.items(), key=lambda kv: kv[1], reverse=True)
            scores = rank_fuse([(ranked, 1.0), (dense, w_dense)], p.rrf_k, p.score_share)
        if not scores:
            return [], 0.0
        metas.update(self.transcript.metas(pai, [s for s in scores if s not in metas]))
        scores = {s: v for s, v in scores.items() if s in metas}
        scores = self._rerank(pai, q, scores, metas, filters, evidence)
        best = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:k]
        relevance = 1.0 if close else self.relevance(pai, q, [s for s, _ in best[: p.floor_hits]], metas)
        if not close and p.named_check > 0 and q.named - self._bot_ids(pai):
            relevance = min(relevance, self.named_relevance(pai, q, [s for s, _ in best], metas))
        rows = self.transcript.by_seqs(pai, [s for s, _ in best])  # only the hits are read in full
        return [MemoryHit(rows[s].record, round(v, 6)) for s, v in best if s in rows], relevance

    def _kinds(self, pai: str, q: _Query, filters: SearchFilters | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(evidence kinds, other kinds) the search covers (see ``bot.ports.SearchFilters``)."""
        if filters is not None and filters.kinds:
            asked = tuple(dict.fromkeys(filters.kinds))
            return tuple(x for x in asked if x in EVIDENCE_KINDS), tuple(x for x in asked if x not in EVIDENCE_KINDS)
        others = (QUESTION, BOT) if q.named & self._bot_ids(pai) else (QUESTION,)
        return EVIDENCE_KINDS, others

    def _others(self, pai: str, q: _Query, n: int, filters: SearchFilters, metas: dict[int, Meta],
                as_evidence: bool) -> dict[int, float]:  # fmt: skip
        """Questions, commands and the bot's messages matching the query. Next to evidence, questions are
        scaled down and those repeating the query dropped; asked for by kind, they rank as they are."""
        p = self.params
        found = self.transcript.lexical(pai, fts_match(q.terms), n, filters, p.weights.other(), evidence=False)
        if not found or not as_evidence:
            return dict(found)
        metas.update(self.transcript.metas(pai, [s for s, _ in found]))
        questions = [s for s, _ in found if s in metas and metas[s].kind == QUESTION]
        matched = self.transcript.matched_terms(pai, questions, q.terms, evidence=False)
        weight = self._term_weights(pai, q)
        total = sum(weight.values()) or 1.0
        out: dict[int, float] = {}
        for seq, score in found:
            if seq in matched:
                if sum(weight[t] for t in matched[seq]) / total >= p.repeat_share:
                    continue  # the query asked again: never evidence for its own answer
                score *= p.question_weight
            out[seq] = score
        return out

    def lexical(self, pai: str, terms: list[str], n: int, filters: SearchFilters | None,
                counts: list[int] | None = None) -> list[tuple[int, float]]:  # fmt: skip
        """BM25 candidates within a bounded cost (see ``split_terms``): the selective terms are ranked over
        the whole history; when common terms had to be set aside, all terms are also ranked over the most
        recent ``recent_window`` matching records, and each record keeps its better score."""
        p = self.params
        weights = p.weights.evidence()
        if counts is None:
            counts = self.transcript.term_counts(pai, terms, p.lexical_budget)
        selective, common = split_terms(terms, counts, p.lexical_budget)
        if not common:
            return self.transcript.lexical(pai, fts_match(selective), n, filters, weights) if selective else []
        best: dict[int, float] = {}
        if selective:
            best.update(self.transcript.lexical(pai, fts_match(selective), n, filters, weights))
        everything = fts_match(selective + common)
        start = self.transcript.window_start(pai, everything, p.recent_window, filters)
        for seq, score in self.transcript.lexical(pai, everything, n, filters, weights, min_seq=start):
            best[seq] = max(best.get(seq, 0.0), score)
        return sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:n]

    # ------------------------------------------------------------------ re-ranking

    def _rerank(self, pai: str, q: _Query, fused: dict[int, float], metas: dict[int, Meta],
                filters: SearchFilters | None, evidence: tuple[str, ...]) -> dict[int, float]:  # fmt: skip
        p = self.params
        scores = dict(fused)
        ranked = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)
        if p.answer_weight > 0 and evidence:
            for seq, score in ranked[: p.answer_pool]:
                m = metas[seq]
                if m.asks and m.kind in EVIDENCE_KINDS:
                    nxt = self.transcript.next_seq(pai, m.chat_key, seq, evidence)
                    if nxt is not None:
                        scores[nxt] = scores.get(nxt, 0.0) + p.answer_weight * score
        if p.neighbour_weight > 0 and p.neighbour_width > 0:
            for seq, score in ranked[: p.neighbour_pool]:
                for nb in self.transcript.neighbour_seqs(pai, metas[seq].chat_key, seq, p.neighbour_width, evidence):
                    scores[nb] = scores.get(nb, 0.0) + p.neighbour_weight * score
        missing = [s for s in scores if s not in metas]
        if missing:
            metas.update(self.transcript.metas(pai, missing))
        scores = {s: v for s, v in scores.items() if s in metas and _passes(metas[s], filters)}
        if q.named and p.author_boost > 0:
            for seq in scores:
                if metas[seq].author_id in q.named:
                    scores[seq] *= 1.0 + p.author_boost
        if q.spans and p.date_boost > 0:
            for seq in scores:
                if within(metas[seq].ts, q.spans, p.date_slack_s):
                    scores[seq] *= 1.0 + p.date_boost
        if p.when_boost > 0 and scores and asks_when(q.text):
            for seq in self.transcript.timed(pai, list(scores)):
                scores[seq] *= 1.0 + p.when_boost
        if p.recency_weight > 0 and scores:
            times = [metas[s].ts for s in scores]
            t0, t1 = min(times), max(times)
            if t1 > t0:
                for seq in scores:
                    age = (t1 - metas[seq].ts) / (t1 - t0)
                    scores[seq] *= 1.0 + p.recency_weight * math.exp(-3.0 * age)
        return scores

    # ------------------------------------------------------------------ relevance

    def _term_weights(self, pai: str, q: _Query) -> dict[str, float]:
        """BM25's idf of each query term over the pai's evidence (a term the pai never saw weighs most). The
        words of a date the query names ("on 7 June 2024") weigh nothing: that date is matched by when a turn
        was said, not by its words."""
        size = self._size(pai)
        dated = bool(q.spans)
        return {t: 0.0 if dated and is_date_word(t) else math.log(1.0 + (size - c + 0.5) / (c + 0.5))
                for t, c in zip(q.terms, q.counts)}  # fmt: skip

    def relevance(self, pai: str, q: _Query, seqs: Sequence[int], metas: dict[int, Meta]) -> float:
        """The largest share of the query's term weight that one of ``seqs`` holds (in its author, text or
        the turn before it): 0 when none shares a word with the query, 1 when one holds them all."""
        if not seqs:
            return 0.0
        weight = self._term_weights(pai, q)
        total = sum(weight.values()) or 1.0
        ev = [s for s in seqs if metas[s].kind in EVIDENCE_KINDS]
        other = [s for s in seqs if s not in ev]
        matched = self.transcript.matched_terms(pai, ev, q.terms)
        matched.update(self.transcript.matched_terms(pai, other, q.terms, evidence=False))
        return max(sum(weight[t] for t in terms) / total for terms in matched.values())

    def named_relevance(self, pai: str, q: _Query, seqs: Sequence[int], metas: dict[int, Meta]) -> float:
        """For a query naming members: the largest share of the weight of its terms other than their names
        that one of the named members' own turns among ``seqs`` holds in its text (0 when none of the hits
        is theirs). "What did Caroline realize after her charity race?" when the race was Melanie's finds
        Melanie's turns, or Caroline's without the race."""
        names = {aid: name for name, aid in self._authors(pai).items()}
        folded = fold(q.text)
        # only members named in full: a word of a longer name ("party" of "Party Planner") is not a name
        named = {aid for aid in q.named - self._bot_ids(pai) if _names_in_full(names.get(aid, ""), folded)}
        if not named:
            return 1.0
        name_terms = {t for aid in named for t in query_terms(names.get(aid, ""))}
        weight = {t: w for t, w in self._term_weights(pai, q).items() if t not in name_terms}
        total = sum(weight.values())
        if total <= 0:
            return 1.0  # the query is only a name: nothing to check
        own = [s for s in seqs if metas[s].author_id in named and metas[s].kind in EVIDENCE_KINDS]
        if not own:
            return 0.0
        matched = self.transcript.matched_terms(pai, own, list(weight), columns=("body",))
        return max(sum(weight[t] for t in terms) / total for terms in matched.values())

    def _size(self, pai: str) -> int:
        """The pai's record count, refreshed at most once a minute (it only weighs terms)."""
        now = time.monotonic()
        cached = self._sizes.get(pai)
        if cached is None or now - cached[0] > 60.0:
            cached = self._sizes[pai] = (now, self.transcript.size(pai))
        return cached[1]


# "when" opening the question, after a mention or an address ("@Pai when ...", "Pai, when ...")
_WHEN = re.compile(
    r"^(?:\W*@?\w+[,:]?\s+)?\W*when\b|\bwhat (?:year|month|day|date|time)\b|\blong ago\b"
    r"|什么时候|何时|哪天|哪一天|哪年|几号|几月",
    re.I,
)


def asks_when(query: str) -> bool:
    """Whether the query asks for a time ("When did ...", "What year ...", "什么时候")."""
    return _WHEN.search(query) is not None


def _names_in_full(name: str, folded_query: str) -> bool:
    """Whether the (folded) display name occurs in the folded query as a whole."""
    if not name:
        return False
    if not name.isascii():
        return name in folded_query
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", folded_query) is not None


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


def _evidence_filters(filters: SearchFilters | None, kinds: tuple[str, ...]) -> SearchFilters | None:
    """Filters for the evidence table, which holds nothing but evidence: all of it needs no kind filter."""
    if set(kinds) != set(EVIDENCE_KINDS):
        return _with_kinds(filters, kinds)
    if filters is None or not filters.kinds:
        return filters
    return _with_kinds(filters, ())


def _within_span(filters: SearchFilters | None, start: float, end: float) -> SearchFilters:
    """``filters`` narrowed to ``[start, end)`` (Unix seconds)."""
    f = filters or SearchFilters()
    since = datetime.fromtimestamp(start, timezone.utc)
    until = datetime.fromtimestamp(end, timezone.utc)
    if f.since is not None and _aware(f.since) > since:
        since = _aware(f.since)
    if f.until is not None and _aware(f.until) < until:
        until = _aware(f.until)
    return SearchFilters(f.author_ids, f.author_names, since, until, f.kinds)


def _with_kinds(filters: SearchFilters | None, kinds: tuple[str, ...]) -> SearchFilters:
    if filters is None:
        return SearchFilters(kinds=kinds)
    return SearchFilters(filters.author_ids, filters.author_names, filters.since, filters.until, kinds)


def _passes(m: Meta, f: SearchFilters | None) -> bool:
    """Whether a record reached by propagation satisfies the search filters (it came from outside the
    candidate query)."""
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
