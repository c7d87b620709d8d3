"""Windows of conversation for summaries, and the mechanical digest used when no model is configured.

``parse_since`` turns "yesterday", "3h", "since monday", "昨天", "2026-11-01" into the start of a window
(always in the past); ``digest`` describes a window without understanding it: who talked and how much, the
most-discussed terms, and the messages whose wording looks like a decision or a to-do. It says plainly
that it is a digest. Pure functions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import rjieba

from bot.context import fmt_time
from bot.i18n import Translator
from bot.ports import MemoryRecord
from bot.skills.timeparse import local_dt

_DAYS_EN = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS_ZH = "一二三四五六日"

DECISION_WORDS = re.compile(
    r"\b(?:decided|decision|agreed|let'?s go with|we'?ll go with|going with|final(?:ly)?|settled|approved|"
    r"we will|we'll)\b|决定|定了|就这么|确定|同意|敲定|拍板",
    re.I,
)
TODO_WORDS = re.compile(
    r"\b(?:todo|to-do|to do|i'?ll|i will|will do|need to|needs to|must|should|please|deadline|by (?:mon|tue|wed|"
    r"thu|fri|sat|sun|tomorrow|tonight|next)\w*|due)\b|我来|我去|负责|待办|截止|记得|需要|要在|之前完成",
    re.I,
)
_STOP = set(
    "the and for that this with you are was were have has had not but they them then than what when where who "
    "will would could should can just like about from your our out there here all any get got did does its it's "
    "i'm we're let's yes yeah okay ok sure also been being into over some more very much one two also".split()
)
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'\-]{2,}")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Chinese words that say nothing about a topic; single characters (的, 订, 吗) never count as terms either
_CJK_STOP = set(
    """我们 你们 他们 她们 咱们 大家 自己 这个 那个 这些 那些 这样 那样 什么 怎么 怎么样 为什么 哪里 哪个 谁的 没有 就是
    可以 还是 一下 已经 现在 今天 明天 昨天 时候 知道 觉得 一个 还有 然后 所以 因为 但是 如果 不是 是不是 应该 需要 可能
    真的 好的 好吧 哈哈 哈哈哈 谢谢 大概 一起 到时候 有没有 是的 对的 没问题""".split()
)


def parse_since(text: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The window start ``text`` names, or None if it names none. Empty text -> None (caller's default)."""
    t = text.strip().lower()
    t = re.sub(r"^(?:since|from|of|for|the\s+last|last|past|自从|从)\s*", "", t).strip()
    t = re.sub(r"(?:以来|开始|之后|以后)$", "", t).strip()
    if not t:
        return None
    today = now.astimezone(tz).date()
    if t in ("today", "今天", "今日"):
        return local_dt(today, datetime.min.time(), tz)
    if t in ("yesterday", "昨天", "昨日"):
        return local_dt(today - timedelta(days=1), datetime.min.time(), tz)
    if t in ("week", "last week", "上周", "一周", "这周", "本周"):
        return now - timedelta(days=7)
    m = re.fullmatch(
        r"(\d+)\s*(m|min|mins|minutes?|h|hrs?|hours?|d|days?|w|weeks?|分钟|小时|个小时|天|周)", t
    )
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if unit.startswith(("m", "分")):
            return now - timedelta(minutes=n)
        if unit.startswith(("h", "小", "个")):
            return now - timedelta(hours=n)
        if unit.startswith(("w", "周")):
            return now - timedelta(weeks=n)
        return now - timedelta(days=n)
    m = re.fullmatch(r"(?:周|星期|礼拜)([一二三四五六日天])", t)
    day = _DAYS_ZH.index(m.group(1).replace("天", "日")) if m else None
    if day is None:
        for i, name in enumerate(_DAYS_EN):
            if t in (name, name[:3]):
                day = i
    if day is not None:
        back = (today.weekday() - day) % 7 or 7
        return local_dt(today - timedelta(days=back), datetime.min.time(), tz)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", t)
    if m:
        try:
            return local_dt(
                datetime(int(m.group(1)), int(m.group(2)), int(m.group(3))).date(), datetime.min.time(), tz
            )
        except ValueError:
            return None
    return None


def top_terms(records: Sequence[MemoryRecord], n: int = 8, names: Sequence[str] = ()) -> list[tuple[str, int]]:
    """The terms most messages use: English words of 3+ letters and Chinese words (jieba) of 2+ characters,
    without function words and without the bot's own ``names`` (asking Pai is not a topic)."""
    skip = {x.casefold() for x in names if x}
    counts: Counter[str] = Counter()
    for rec in records:
        seen: set[str] = set()
        for w in _WORD.findall(rec.text.lower()):
            if w not in _STOP:
                seen.add(w)
        for run in _CJK_RUN.findall(rec.text):
            seen.update(w for w in rjieba.cut(run) if len(w) >= 2 and w not in _CJK_STOP)
        counts.update(t for t in seen if t not in skip)
    ranked = sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))  # ties by term: stable across runs
    return [(t, c) for t, c in ranked[:n] if c > 1]


def digest(
    records: Sequence[MemoryRecord], since: datetime, tz: ZoneInfo, tr: Translator, *, truncated: bool = False,
    names: Sequence[str] = (),
) -> str:
    """A mechanical digest of ``records`` (members' messages, oldest first); ``names`` are the bot's."""
    head = tr._("📋 Digest since {time}", time=fmt_time(since, tz))
    note = tr._(
        "(No language model is configured, so this is a mechanical digest — counts, frequent terms and "
        "messages that look like decisions or to-dos — not a real summary.)"
    )
    if not records:
        return f"{head}\n{tr._('Nothing was said in this group in that time.')}\n{note}"
    people = Counter(r.author_name for r in records)
    if truncated:
        head += tr._(" (the most recent messages only)")
    lines = [head, note, ""]
    messages = tr.ngettext("{n} message", "{n} messages", len(records))
    speakers = tr.ngettext("{n} person", "{n} people", len(people))
    who = tr.commas([f"{name} ({n})" for name, n in people.most_common(10)])
    lines.append(tr._("{messages} from {people}: {who}", messages=messages, people=speakers, who=who))
    terms = top_terms(records, names=names)
    if terms:
        lines.append(tr._("Most discussed: {terms}", terms=tr.commas([f"{t} ({c})" for t, c in terms])))
    decisions = [r for r in records if DECISION_WORDS.search(r.text)]
    todos = [r for r in records if TODO_WORDS.search(r.text) and r not in decisions]
    titles = (tr._("Looks like a decision:"), tr._("Looks like a to-do:"))
    for title, found in zip(titles, (decisions, todos), strict=True):
        if found:
            lines.append(f"\n{title}")
            lines.extend(
                f"• {r.author_name}, {fmt_time(r.sent_at, tz)}: {_short(r.text)}" for r in found[-6:]
            )
    lines.append("\n" + tr._("Add a to-do with /todo add <task> [@owner] [by <when>]."))
    return "\n".join(lines)


def _short(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
