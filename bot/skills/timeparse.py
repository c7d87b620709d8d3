"""A deterministic parser for when something should happen, in English and Chinese, so reminders work
without a language model.

    parse_when("in 2h stand up", now, tz)          -> When(due=now+2h, rule=None, text="stand up")
    parse_when("every day 9am standup", now, tz)   -> When(due=next 09:00, rule="daily 09:00", text="standup")
    parse_when("每天早上9点提醒我打卡", now, tz)     -> When(due=next 09:00, rule="daily 09:00", text="打卡")

Understood pieces (anywhere in the text; what is left over is the reminder's text):

* relative: ``in 2h``, ``in 30 min``, ``in 1h30m``, ``in an hour``, ``in half an hour``, ``in 3 days``;
  ``10分钟后``, ``两小时后``, ``半小时后``, ``3天后``
* day: ``today``, ``tonight``, ``tomorrow``, ``day after tomorrow``, ``friday``, ``on fri``, ``next monday``
  (the first Monday after today), ``2026-11-05``, ``Nov 5``, ``5 Nov``; ``今天``, ``今晚``, ``明天``, ``明早``,
  ``后天``, ``大后天``, ``周五``, ``星期五``, ``下周一`` (Monday of next week), ``11月5日``/``11月5号``
* time: ``9:00``, ``9am``, ``3:30pm``, ``at 15``, ``noon``, ``midnight``; ``9点``, ``9点半``, ``9点15分``,
  ``9点一刻``, with ``早上/上午/中午/下午/傍晚/晚上/凌晨``
* recurrence: ``every day``/``daily``, ``every weekday``/``weekdays``, ``every friday``, ``every week``;
  ``每天``/``每日``, ``每个工作日``/``工作日``, ``每周五``/``每星期五``, ``每周``

A day without a time means 09:00; a time without a day means its next occurrence. Times are wall-clock
times in the group's time zone (DST-safe through ``zoneinfo``); results are aware UTC datetimes.
Recurrence rules are small strings: ``"daily 09:00"``, ``"weekdays 09:00"``, ``"weekly 4 15:00"``
(weekday 0 = Monday). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.i18n import Translator
from bot.skills.timewords import (
    FILLER_HEAD,
    FILLER_TAIL,
    MONTHS,
    RE_DATE_ISO,
    RE_DATE_MON,
    RE_DATE_ZH,
    RE_DAY_EN,
    RE_DAY_ZH,
    RE_EVERY_EN,
    RE_EVERY_ZH,
    RE_IN_EN,
    RE_IN_ZH,
    RE_PART_EN,
    RE_TIME_EN,
    RE_TIME_ZH,
    UNIT,
    WEEKDAYS_EN,
    WEEKDAYS_ZH,
    ZH_DIGITS,
)

DEFAULT_TIME = time(9, 0)


@dataclass(frozen=True, slots=True)
class When:
    due: datetime  # aware, UTC
    rule: str | None  # recurrence rule, or None for a one-off
    text: str  # what is left of the input: what to remind about


@dataclass
class _Parts:
    rel: timedelta | None = None
    day: date | None = None
    tod: time | None = None
    pm: bool | None = None  # True: afternoon/evening hint; False: morning hint
    by_weekday: bool = False  # the day came from a weekday name: a passed time means next week
    noon: bool = False
    rule: str | None = None  # "daily" | "weekdays" | "weekly <d>"


def zh_numerals_to_digits(text: str) -> str:
    """Chinese numerals before a time or count unit become digits: ``两小时`` -> ``2小时``, ``十五分钟`` -> ``15分钟``."""

    def conv(m: re.Match[str]) -> str:
        return str(_zh_number(m.group(1))) + m.group(2)

    # not after 周/星期/礼拜: there the numeral is a weekday ("周二十点" is Tuesday 10 o'clock)
    return re.sub(
        r"(?<![周期拜])([零〇一二两三四五六七八九十]+)(点|分|个?小时|个?钟头|天|号|日|月|周后|个?星期后|年)",
        conv,
        text,
    )


def _zh_number(s: str) -> int:
    if "十" not in s:
        value = 0
        for ch in s:
            value = value * 10 + ZH_DIGITS.get(ch, 0)
        return value
    tens, _, ones = s.partition("十")
    return (ZH_DIGITS.get(tens, 1) if tens else 1) * 10 + (ZH_DIGITS.get(ones, 0) if ones else 0)


def _normalise(text: str) -> str:
    text = text.translate(str.maketrans("０１２３４５６７８９：", "0123456789:"))
    return zh_numerals_to_digits(text)


def _cut(text: str, m: re.Match[str]) -> str:
    return text[: m.start()] + " " + text[m.end() :]


def parse_when(text: str, now: datetime, tz: ZoneInfo) -> When | None:
    """Parse ``text``; None when it names no time at all. ``now`` is aware (any zone)."""
    work = _normalise(text)
    parts = _Parts()
    found = False
    for extract in (_extract_rule, _extract_relative, _extract_date, _extract_day, _extract_time):
        work, hit = extract(work, parts, now.astimezone(tz))
        found = found or hit
    if not found:
        return None
    due = _resolve(parts, now, tz)
    if due is None:
        return None
    return When(due, _full_rule(parts), clean_text(work))


# What marks a deadline around a time ("周五前", "截止到明天", "今晚8点截止") is left standing alone once the time
# is cut out; it is no part of the task.
_DEADLINE_RESIDUE = re.compile(r"(?:(?<=\s)|^)(?:之前|以前|前|截止到|截至|截止|为止)(?=\s|$)")


def clean_text(text: str) -> str:
    text = _DEADLINE_RESIDUE.sub(" ", " ".join(text.split()))
    text = " ".join(text.split())
    for _ in range(3):
        text = FILLER_HEAD.sub("", text)
        text = FILLER_TAIL.sub("", text)
    return text.strip(" ,，:：")


# --------------------------------------------------------------------------- extractors


def _extract_rule(text: str, p: _Parts, local_now: datetime) -> tuple[str, bool]:
    m = RE_EVERY_EN.search(text)
    if m:
        unit = (m.group("unit") or "").lower()
        wd = m.group("wd") or m.group("on")
        if wd:
            p.rule = f"weekly {WEEKDAYS_EN[wd.lower()]}"
        elif unit == "weekday" or m.group("wdays"):
            p.rule = "weekdays"
        elif unit == "week" or m.group("weekly"):
            p.rule = f"weekly {local_now.weekday()}"
        else:
            p.rule = "daily"
            if unit == "evening":
                p.pm = True
            elif unit == "morning":
                p.pm = False
        return _cut(text, m), True
    m = RE_EVERY_ZH.search(text)
    if m:
        token = m.group(0)
        if "工作日" in token:
            p.rule = "weekdays"
        elif token.startswith(("每天", "每日")):
            p.rule = "daily"
        else:
            wd = m.group("wd")
            p.rule = f"weekly {WEEKDAYS_ZH[wd] if wd else local_now.weekday()}"
        return _cut(text, m), True
    return text, False


def _extract_relative(text: str, p: _Parts, local_now: datetime) -> tuple[str, bool]:
    m = RE_IN_EN.search(text)
    if m:
        spec = m.group("spec").lower()
        if spec.startswith("half"):
            p.rel = timedelta(minutes=30)
        elif "and a half" in spec:
            p.rel = timedelta(minutes=90)
        elif spec.startswith("a"):
            p.rel = _delta(1, spec.split()[-1])
        else:
            p.rel = sum(
                (_delta(float(n), u) for n, u in re.findall(rf"(\d+(?:\.\d+)?)\s*({UNIT})(?![a-z])", spec)),
                timedelta(),
            )
        return _cut(text, m), True
    m = RE_IN_ZH.search(text)
    if m:
        spec = m.group("spec")
        if spec.startswith("半"):
            p.rel = timedelta(minutes=30)
        else:
            total = timedelta()
            for n, unit in re.findall(r"(\d+)\s*(分钟|分|个?小时|个?钟头|天|周|个?星期)", spec):
                total += _delta(
                    float(n),
                    {"分钟": "m", "分": "m", "天": "d", "周": "w"}.get(unit, "w" if "星期" in unit else "h"),
                )
            p.rel = total
        return _cut(text, m), True
    return text, False


def _delta(n: float, unit: str) -> timedelta:
    u = unit.lower()
    if u.startswith("w"):
        return timedelta(weeks=n)
    if u.startswith("d"):
        return timedelta(days=n)
    if u.startswith("h"):
        return timedelta(hours=n)
    return timedelta(minutes=n)


def _extract_date(text: str, p: _Parts, local_now: datetime) -> tuple[str, bool]:
    m = RE_DATE_ISO.search(text)
    if m:
        p.day = _safe_date(int(m.group("y")), int(m.group("m")), int(m.group("d")))
        if m.group("H"):
            p.tod = time(int(m.group("H")) % 24, min(int(m.group("M")), 59))
        return _cut(text, m), p.day is not None
    m = RE_DATE_ZH.search(text) or RE_DATE_MON.search(text)
    if m:
        groups = m.groupdict()
        if "y" in groups:
            month, day, year = int(m.group("m")), int(m.group("d")), m.group("y")
        else:
            mon = (m.group("m1") or m.group("m2")).lower()[:3]
            month, day, year = MONTHS[mon], int(m.group("d1") or m.group("d2")), None
        y = int(year) if year else local_now.year
        d = _safe_date(y, month, day)
        if d is not None and not year and d < local_now.date():
            d = _safe_date(y + 1, month, day)
        p.day = d
        return _cut(text, m), d is not None
    return text, False


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _extract_day(text: str, p: _Parts, local_now: datetime) -> tuple[str, bool]:
    today = local_now.date()
    m = RE_DAY_EN.search(text)
    if m and p.day is None:
        rel = (m.group("rel") or "").lower()
        if rel:
            p.day = today + timedelta(days={"today": 0, "tonight": 0, "tomorrow": 1}.get(rel.split()[0], 2))
            p.pm = True if rel == "tonight" else p.pm
        else:
            wd = WEEKDAYS_EN[m.group("wd").lower()]
            ahead = (wd - today.weekday()) % 7
            if (m.group("next") or "").strip().lower() == "next" and ahead == 0:
                ahead = 7
            p.day = today + timedelta(days=ahead)
            p.by_weekday = True
            if p.rule and p.rule.startswith("weekly"):
                p.rule = f"weekly {wd}"
        return _cut(text, m), True
    m = RE_DAY_ZH.search(text)
    if m and p.day is None:
        rel = m.group("rel")
        if rel:
            offset = {"今": 0, "明": 1, "后": 2, "大": 3}[rel[0]]
            p.day = today + timedelta(days=offset)
            if rel.endswith("晚"):
                p.pm = True
            elif rel.endswith("早"):
                p.pm = False
        else:
            wd = WEEKDAYS_ZH[m.group("wd")]
            nxt = m.group("next") or ""
            monday = today - timedelta(days=today.weekday())
            if nxt in ("下", "下下"):
                p.day = monday + timedelta(weeks=len(nxt), days=wd)
            elif nxt in ("这", "本"):
                p.day = monday + timedelta(days=wd)
            else:
                p.day = today + timedelta(days=(wd - today.weekday()) % 7)
                p.by_weekday = True
        return _cut(text, m), True
    return text, False


def _extract_time(text: str, p: _Parts, local_now: datetime) -> tuple[str, bool]:
    m = RE_TIME_ZH.search(text)
    if m and m.group("noonzh"):
        p.tod = time(12, 0) if m.group("noonzh") in ("中午", "正午") else time(0, 0)
        return _cut(text, m), True
    if m:
        if m.group("h2"):
            hour, minute = int(m.group("h2")), int(m.group("m2"))
        else:
            hour, minute = int(m.group("h")), 0
        if m.group("half"):
            minute = 30
        elif m.group("quarter"):
            minute = 15
        elif m.group("m"):
            minute = int(m.group("m"))
        period = m.group("period") or m.group("period2") or ""
        if period in ("下午", "傍晚", "晚上", "夜里", "晚"):
            p.pm = True
        elif period == "中午":
            p.noon = True
        elif period:
            p.pm = False
        if hour <= 24 and minute < 60:
            p.tod = time(hour % 24, minute)
            return _cut(text, m), True
    m = RE_TIME_EN.search(text)
    if m:
        word = (m.group("word") or "").lower()
        if word:
            p.tod = time(0, 0) if word == "midnight" else time(12, 0)
            p.pm = None
        elif m.group("ampm"):
            hour, minute = int(m.group("h")), int(m.group("m") or 0)
            if not 1 <= hour <= 12 or minute > 59:
                return text, False
            p.tod = time(hour % 12 + (12 if m.group("ampm").lower().startswith("p") else 0), minute)
            p.pm = None
        elif m.group("h24"):
            hour, minute = int(m.group("h24")), int(m.group("m24"))
            if hour > 23 or minute > 59:
                return text, False
            p.tod = time(hour, minute)
        else:
            hour = int(m.group("hbare"))
            if hour > 23:
                return text, False
            p.tod = time(hour, 0)
        text = _cut(text, m)
        part = RE_PART_EN.search(text)
        if part and p.tod is not None:
            p.pm = part.group("part").lower() != "morning"
            text = _cut(text, part)
        return text, True
    part = RE_PART_EN.search(text)
    if part and (p.day is not None or p.rule):
        name = part.group("part").lower()
        p.tod = {"morning": time(9, 0), "afternoon": time(15, 0), "evening": time(19, 0)}[name]
        return _cut(text, part), True
    return text, False


# --------------------------------------------------------------------------- resolution


def _apply_period(p: _Parts) -> time | None:
    tod = p.tod
    if tod is None:
        return None
    if p.noon and tod.hour < 3:
        return time(tod.hour + 12, tod.minute)
    if p.pm and tod.hour < 12:
        return time(tod.hour + 12, tod.minute)
    if p.pm is False and tod.hour == 12:
        return time(0, tod.minute)
    return tod


def _resolve(p: _Parts, now: datetime, tz: ZoneInfo) -> datetime | None:
    if p.rel is not None:
        if p.rel <= timedelta(0):
            return None
        return (now + p.rel).astimezone(timezone.utc)
    tod = _apply_period(p)
    if p.rule:
        if tod is None:
            tod = time(20, 0) if p.pm else DEFAULT_TIME
        return next_occurrence(_full_rule_of(p.rule, tod), now, tz)
    local_now = now.astimezone(tz)
    if p.day is not None:
        if tod is None:
            tod = time(20, 0) if p.pm else DEFAULT_TIME
        due = local_dt(p.day, tod, tz)
        if due <= now and p.by_weekday:
            due = local_dt(p.day + timedelta(days=7), tod, tz)
        return due
    if tod is None:
        return None
    due = local_dt(local_now.date(), tod, tz)
    if due <= now:
        due = local_dt(local_now.date() + timedelta(days=1), tod, tz)
    return due


def _full_rule(p: _Parts) -> str | None:
    if not p.rule or p.rel is not None:
        return None
    tod = _apply_period(p) or (time(20, 0) if p.pm else DEFAULT_TIME)
    return _full_rule_of(p.rule, tod)


def _full_rule_of(rule: str, tod: time) -> str:
    return f"{rule} {tod.hour:02d}:{tod.minute:02d}"


def local_dt(day: date, tod: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time in ``tz`` as aware UTC (a time skipped by DST moves forward, zoneinfo's fold=0)."""
    return datetime.combine(day, tod, tzinfo=tz).astimezone(timezone.utc)


def next_occurrence(rule: str, after: datetime, tz: ZoneInfo) -> datetime:
    """The first time strictly after ``after`` matching ``rule`` (``"daily 09:00"``, ``"weekdays 09:00"``,
    ``"weekly 4 15:00"``)."""
    kind, *rest = rule.split()
    hh, mm = (int(x) for x in rest[-1].split(":"))
    weekday = int(rest[0]) if kind == "weekly" else None
    day = after.astimezone(tz).date()
    for _ in range(15):
        ok = (
            kind == "daily"
            or (kind == "weekdays" and day.weekday() < 5)
            or (kind == "weekly" and day.weekday() == weekday)
        )
        if ok:
            at = local_dt(day, time(hh, mm), tz)
            if at > after:
                return at
        day += timedelta(days=1)
    raise ValueError(f"bad recurrence rule {rule!r}")


def describe_rule(rule: str, t: Translator) -> str:
    kind, *rest = rule.split()
    at = rest[-1]
    if kind == "daily":
        return t._("every day at {time}", time=at)
    if kind == "weekdays":
        return t._("every weekday at {time}", time=at)
    return t._("every {weekday} at {time}", weekday=t.weekday(int(rest[0])), time=at)


def valid_rule(rule: str) -> bool:
    return bool(re.fullmatch(r"(daily|weekdays|weekly [0-6]) ([01]\d|2[0-3]):[0-5]\d", rule))
