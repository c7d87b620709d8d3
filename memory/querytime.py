"""Dates a query names ("on 9 November, 2022", "in January 2024", "2023-05-08", "2023年5月8日", "2024年3月"),
as UTC time spans, so that search can prefer what was said then. Pure functions.

Only absolute dates are read: a relative one ("yesterday", "上周") depends on when and where it is asked,
which the memory does not know; the core turns those into search filters itself.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split()
)}  # fmt: skip
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))

_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MON})\.?,?\s+(\d{{4}})\b", re.I)
_MONTH_DAY_YEAR = re.compile(rf"\b({_MON})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,\s*|\s+)(\d{{4}})\b", re.I)
_MONTH_YEAR = re.compile(rf"\b({_MON})\.?,?\s+(?:of\s+)?(\d{{4}})\b", re.I)
_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_ZH_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月(?:\s*(\d{1,2})\s*[日号])?")
_YEAR = re.compile(r"\b(?:in|during|of)\s+(\d{4})\b|(\d{4})\s*年", re.I)

Span = tuple[float, float]  # [start, end) in Unix seconds


def _day(y: int, m: int, d: int) -> Span | None:
    try:
        start = datetime(y, m, d, tzinfo=timezone.utc)
    except ValueError:
        return None
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def _month(y: int, m: int) -> Span | None:
    if not 1 <= m <= 12:
        return None
    start = datetime(y, m, 1, tzinfo=timezone.utc)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
    return start.timestamp(), end.timestamp()


def query_spans(query: str) -> list[Span]:
    """The days, months or years the query names (the most precise form found), as UTC spans."""
    days: list[Span | None] = []
    for d, mon, y in _DAY_MONTH_YEAR.findall(query):
        days.append(_day(int(y), _MONTHS[mon.lower()], int(d)))
    for mon, d, y in _MONTH_DAY_YEAR.findall(query):
        days.append(_day(int(y), _MONTHS[mon.lower()], int(d)))
    for y, m, d in _ISO.findall(query):
        days.append(_day(int(y), int(m), int(d)))
    months: list[Span | None] = []
    for y, m, d in _ZH_DATE.findall(query):
        (days if d else months).append(_day(int(y), int(m), int(d)) if d else _month(int(y), int(m)))
    found = [s for s in days if s]
    if found:
        return found
    months += [_month(int(y), _MONTHS[mon.lower()]) for mon, y in _MONTH_YEAR.findall(query)]
    found = [s for s in months if s]
    if found:
        return found
    years = [int(a or b) for a, b in _YEAR.findall(query)]
    return [(datetime(y, 1, 1, tzinfo=timezone.utc).timestamp(), datetime(y + 1, 1, 1, tzinfo=timezone.utc).timestamp())
            for y in years if 1900 < y < 2200]  # fmt: skip


def is_date_word(term: str) -> bool:
    """Whether a query term is part of how a date is written (a month, a day, a year: "june", "7th", "2024")."""
    return term in _MONTHS or term.isdigit() or re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", term) is not None


def within(ts: float, spans: list[Span], slack_s: float) -> bool:
    return any(a - slack_s <= ts < b + slack_s for a, b in spans)


_TIME_WORDS = re.compile(
    r"\b(?:yesterday|today|tonight|tomorrow|ago|last|next|this (?:week|month|year|weekend|morning|evening)"
    r"|(?:mon|tues|wednes|thurs|fri|satur|sun)days?|weekends?|weeks?|months?|years?|recently|earlier"
    rf"|{_MON}|(?:19|20)\d\d)\b|\d{{1,2}}(?:st|nd|rd|th)\b"
    r"|昨天|今天|明天|前天|后天|上周|下周|上个月|下个月|去年|今年|明年"
    r"|周[一二三四五六日末]|星期|\d+\s*[年月日号]",
    re.I,
)


def says_time(text: str) -> bool:
    """Whether a turn says when something happened ("yesterday", "last Friday", "in May", "2022", "上周")."""
    return _TIME_WORDS.search(text) is not None
