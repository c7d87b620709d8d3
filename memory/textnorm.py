"""Text normalisation shared by the lexical index, the offline embedding and query analysis.

Why character n-grams for CJK: SQLite's ``unicode61`` tokenizer treats a run of Han/Kana/Hangul as one
token, so "我们周六去公园" would only match itself. We rewrite such runs as overlapping character bigrams
(plus the single characters, so one-character queries still match) before the text reaches FTS5. This needs
no dictionary, works the same for Chinese, Japanese and Korean and for mixed text, and recall does not
depend on a segmenter agreeing with itself on query and document (jieba segments "周六去公园" and "公园"
differently depending on context; bigrams always share "公园"). Non-CJK words pass through and are stemmed
by FTS5's ``porter`` wrapper.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Han (incl. ext. A and compatibility), Hiragana, Katakana, Hangul syllables/jamo, CJK punctuation excluded.
_CJK = (
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
)
_RUN = re.compile(rf"([{_CJK}]+)|([^\W{_CJK}]+(?:['’][^\W{_CJK}]+)?)")

# Function words that carry no topic in a question; removed from queries (never from the index).
STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can could did do does doing don't down during each few for from further had
    has have having he her here hers herself him himself his how i i'm if in into is isn't it it's its
    itself just let's me more most my myself no nor not of off on once only or other our ours ourselves
    out over own same she should so some such than that that's the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves ever also any anything something thing
    things kind kinds type types much many lot lots s t d ll m re ve likely""".split()
)


def normalise(text: str) -> str:
    """NFKC + casefold: full-width letters, ligatures and case variants become one form."""
    return unicodedata.normalize("NFKC", text).casefold()


def is_cjk_char(ch: str) -> bool:
    return bool(re.match(f"[{_CJK}]", ch))


def words(text: str) -> Iterator[tuple[str, bool]]:
    """Yield ``(token, is_cjk_run)`` for the normalised text; apostrophes inside words are kept."""
    for m in _RUN.finditer(normalise(text)):
        if m.group(1):
            yield m.group(1), True
        else:
            yield m.group(2).replace("’", "'"), False


def cjk_grams(run: str, unigrams: bool = True) -> list[str]:
    """Character bigrams of a CJK run (and its unigrams when asked; always for a one-character run)."""
    grams = [run[i : i + 2] for i in range(len(run) - 1)]
    if unigrams or len(run) == 1:
        grams.extend(run)
    return grams


def index_terms(text: str) -> str:
    """The text as FTS5 should index it: words as they are, CJK runs as bigrams + unigrams."""
    if text.isascii() and "'" not in text:
        # FTS5's tokenizer splits and case-folds plain ASCII exactly as the rewrite below would
        return text
    out: list[str] = []
    for tok, cjk in words(text):
        if cjk:
            out.extend(cjk_grams(tok))
        else:
            out.append(tok.replace("'", ""))
    return " ".join(out)


def query_terms(text: str, drop_stopwords: bool = True) -> list[str]:
    """Distinct query terms in order: words (stop words dropped unless that leaves nothing) and CJK bigrams
    (unigrams only for one-character runs, which keeps CJK queries precise)."""
    raw: list[tuple[str, bool]] = list(words(text))
    terms: list[str] = []
    for tok, cjk in raw:
        if cjk:
            terms.extend(cjk_grams(tok, unigrams=False))
        elif not drop_stopwords or tok not in STOPWORDS:
            terms.append(tok.replace("'", ""))
    if not terms and drop_stopwords:
        return query_terms(text, drop_stopwords=False)
    seen: set[str] = set()
    return [t for t in terms if t and not (t in seen or seen.add(t))]


def fts_phrase(term: str) -> str:
    """One term as a quoted FTS5 phrase, so no term can inject query syntax."""
    return '"' + term.replace('"', '""') + '"'


def fts_match(terms: list[str]) -> str:
    """An FTS5 MATCH expression OR-ing the terms, each quoted so no term can inject query syntax."""
    return " OR ".join(fts_phrase(t) for t in terms)
