"""Answers straight from the group's memory, without a language model.

Used by ``/search`` and by the *no model* mode: an open question gets the most relevant messages the group
said about it, with who said them and when (and a link where the platform has one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from bot.context import fmt_time
from bot.i18n import N_, Translator
from bot.ports import BOT, EVIDENCE_KINDS, QUESTION, MemoryHit, SearchFilters

NO_MODEL_HINT = N_(
    "(No language model is configured, so I can only quote the group's memory. "
    "Set llm.model in config.yaml to let me answer properly.)"
)

# "what" and "when" stay: the memory drops them as stop words itself, and reads "When ...", "What year ..." as
# a question about a time (memory.retrieval.asks_when)
_FILLER = re.compile(
    r"\b(who|where|which|how|did|does|do|is|are|was|were|the|a|an|about|we|you|say|said|"
    r"tell|me|us|of|to|in|on|for|please|can|could|remind|anyone)\b|[?？!！。,，]",
    re.IGNORECASE,
)


def search_query(question: str) -> str:
    """The question without filler words, for lexical search (falls back to the question itself)."""
    stripped = " ".join(_FILLER.sub(" ", question).split())
    return stripped or question.strip()


_WORD = re.compile(r"[a-z0-9]{3,}")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")


def _terms(text: str) -> set[str]:
    """Comparable terms: latin words of 3+ characters and CJK character bigrams (single characters alone)."""
    low = text.lower()
    terms = set(_WORD.findall(low))
    for run in _CJK_RUN.findall(low):
        terms.update(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    return terms


# "what did you say about ...", "你刚才说", "your answer": the asker wants the bot's own words back
_OWN_WORDS = re.compile(
    r"\b(?:did\s+you\s+(?:say|tell|answer|write|reply|mention)|you\s+(?:said|told|answered|wrote|replied|mentioned)|"
    r"your\s+(?:answer|reply|message|summary))\b|你(?:刚才|之前|上次|昨天)?(?:说|讲|回答|提到|回复)",
    re.IGNORECASE,
)


def recall_filters(question: str) -> SearchFilters | None:
    """What a question may be answered from: the group's evidence (the memory's default), and also the
    bot's own messages when the question asks what the bot said."""
    if _OWN_WORDS.search(question):
        return SearchFilters(kinds=(*EVIDENCE_KINDS, QUESTION, BOT))
    return None


def quotable(hits: Sequence[MemoryHit], question: str, exclude_ids: set[str] = frozenset()) -> list[MemoryHit]:
    """The hits worth quoting back without a model: evidence (and the bot's own words, when they were asked
    for: only then does search return them), not other questions put to the bot, and sharing at least one
    term with the question (dense neighbours alone are too loose to quote)."""
    wanted = _terms(search_query(question))
    out = []
    for hit in hits:
        rec = hit.record
        if rec.kind == QUESTION or rec.id in exclude_ids:
            continue
        if wanted and not (wanted & _terms(rec.text)):
            continue
        out.append(hit)
    return out


def format_hits(
    hits: Sequence[MemoryHit], tz: ZoneInfo, t: Translator, limit: int = 5, width: int = 300
) -> list[str]:
    """One line per hit: author, time, text (cut at ``width``), link. The bot's own messages are labelled as
    the bot's, never passed off as a member's."""
    lines = []
    for hit in hits[:limit]:
        rec = hit.record
        text = " ".join(rec.text.split())
        if len(text) > width:
            text = text[: width - 1] + "…"
        link = f" ({rec.url})" if rec.url else ""
        who = t._("{name} (bot)", name=rec.author_name) if rec.kind == BOT else rec.author_name
        lines.append(f"• {who}, {fmt_time(rec.sent_at, tz)}: {text}{link}")
    return lines


def memory_answer(hits: Sequence[MemoryHit], tz: ZoneInfo, t: Translator, *, with_hint: bool) -> str:
    if hits:
        body = t._("Here is what this group said about it:") + "\n" + "\n".join(format_hits(hits, tz, t))
    else:
        body = t._("I can't find anything about that in this group's memory yet.")
    return f"{body}\n\n{t._(NO_MODEL_HINT)}" if with_hint else body
