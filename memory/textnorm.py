"""Text normalisation shared by the lexical index, the offline embedding and query analysis.

Every text is folded first (``fold``): NFKC, case folding, and traditional Chinese characters to simplified
ones (OpenCC's ``t2s``), so 場地 finds 场地 and ＡＢＣ finds abc.

Chinese is split into words by jieba (``rjieba``, the Rust implementation), in its search mode: the words of
a sentence plus the shorter words inside long ones ("中华人民共和国" also yields "中华", "人民", "共和国"), so a
query and a message that segment a compound differently still share terms. Words beat character pairs here:
on the Chinese conversational set (kdconv-mem, dev) jieba's search mode ranks better than overlapping
character bigrams, and the digest's "most discussed" terms are words instead of fragments such as "的场".
Function words (的, 了, 吗 ...) are stop words on both sides. Japanese and Korean runs, which jieba does not
know, stay character bigrams (plus single characters so one-character queries still match). Other words pass
through and are stemmed by FTS5's ``porter`` wrapper; mixed text works because each run is handled on its own.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import rjieba

# Han (incl. ext. A and compatibility), Hiragana, Katakana, Hangul syllables/jamo, CJK punctuation excluded.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = _HAN + "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_RUN = re.compile(rf"([{_CJK}]+)|([^\W{_CJK}]+(?:['’][^\W{_CJK}]+)?)")
_HAN_RUN = re.compile(rf"[{_HAN}]+")
_HAS_HAN = re.compile(rf"[{_HAN}]")

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

# Chinese function words: never index terms, never query terms (a query of nothing else keeps them).
ZH_STOPWORDS = frozenset(
    """的 了 吗 呢 吧 啊 呀 哦 嗯 哈 啦 嘛 么 是 在 和 与 及 或 就 也 都 还 又 很 太 更 最 把 被 给 让 对 从 向 到
    着 过 地 得 之 而 且 但 并 我 你 您 他 她 它 们 我们 你们 他们 她们 它们 咱们 自己 这 那 这个 那个 这些 那些
    这样 那样 有 没 没有 不 一 个 一个 什么 怎么 怎么样 怎样 哪 哪里 哪儿 哪个 谁 多少 几 为什么 如何 吗 呢 是不是
    知道 请问 一下 可以 能 会 要 想 说 告诉 还是 就是 已经 现在 然后 所以 因为 如果 虽然 但是 可是 不过 等 等等""".split()
)


_opencc: Any = None
_opencc_lock = threading.Lock()


def _t2s(text: str) -> str:
    global _opencc
    if _opencc is None:
        with _opencc_lock:
            if _opencc is None:
                import opencc

                _opencc = opencc.OpenCC("t2s.json")
    return str(_opencc.convert(text))


def normalise(text: str) -> str:
    """NFKC + casefold: full-width letters, ligatures and case variants become one form."""
    return unicodedata.normalize("NFKC", text).casefold()


def fold(text: str) -> str:
    """``normalise`` plus traditional Chinese characters folded to simplified ones (OpenCC t2s)."""
    text = normalise(text)
    return _t2s(text) if _HAS_HAN.search(text) else text


def is_cjk_char(ch: str) -> bool:
    return bool(re.match(f"[{_CJK}]", ch))


def words(text: str) -> Iterator[tuple[str, bool]]:
    """Yield ``(token, is_cjk_run)`` for the folded text; apostrophes inside words are kept."""
    for m in _RUN.finditer(fold(text)):
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


@lru_cache(maxsize=50_000)
def _han_words(run: str) -> tuple[str, ...]:
    return tuple(w for w in rjieba.cut_for_search(run) if w.strip())


def cjk_terms(run: str, *, query: bool = False) -> list[str]:
    """Search terms of one CJK run: jieba words (search mode) for Chinese, character bigrams for Japanese and
    Korean. Stop words are dropped, unless that leaves a query with nothing."""
    out: list[str] = []
    pos = 0
    for m in _HAN_RUN.finditer(run):
        if m.start() > pos:
            out.extend(cjk_grams(run[pos : m.start()], unigrams=not query))
        out.extend(w for w in _han_words(m.group()) if w not in ZH_STOPWORDS)
        pos = m.end()
    if pos < len(run):
        out.extend(cjk_grams(run[pos:], unigrams=not query))
    return out


def han_words(text: str) -> list[str]:
    """The Chinese words of a text in order (jieba's default mode, stop words kept): for term statistics."""
    return [w for run in _HAN_RUN.findall(fold(text)) for w in rjieba.cut(run)]


def index_terms(text: str) -> str:
    """The text as FTS5 should index it: words as they are, CJK runs as their search terms."""
    if text.isascii() and "'" not in text:
        # FTS5's tokenizer splits and case-folds plain ASCII exactly as the rewrite below would
        return text
    out: list[str] = []
    for tok, cjk in words(text):
        if cjk:
            out.extend(cjk_terms(tok))
        else:
            out.append(tok.replace("'", ""))
    return " ".join(out)


def query_terms(text: str, drop_stopwords: bool = True) -> list[str]:
    """Distinct query terms in order: words and CJK terms, stop words dropped unless that leaves nothing."""
    terms: list[str] = []
    for tok, cjk in words(text):
        if cjk:
            if drop_stopwords:
                terms.extend(cjk_terms(tok, query=True))
            else:
                terms.extend(_han_words(tok) if _HAS_HAN.search(tok) else cjk_grams(tok, unigrams=False))
        elif not drop_stopwords or tok not in STOPWORDS:
            terms.append(tok.replace("'", ""))
    if not terms and drop_stopwords:
        return query_terms(text, drop_stopwords=False)
    seen: set[str] = set()
    return [t for t in terms if t and not (t in seen or seen.add(t))]


def fts_phrase(term: str) -> str:
    """One term as a quoted FTS5 phrase, so no term can inject query syntax."""
    return '"' + term.replace('"', '""') + '"'


def fts_match(terms: list[str], columns: tuple[str, ...] = ()) -> str:
    """An FTS5 MATCH expression OR-ing the terms, each quoted so no term can inject query syntax; with
    ``columns``, matching only in those columns."""
    expr = " OR ".join(fts_phrase(t) for t in terms)
    if columns and expr:
        return "{" + " ".join(columns) + "} : (" + expr + ")"
    return expr
