"""Questions about a session, understood without a model: which moment of the media they are about.

    "@Pai 刚才他说了什么？" / "what did she just say?"   -> the moment the session is at now ("just now")
    "what happened at 12:30?" / "12分30秒那里说了啥"      -> 750 s into the media
    "/recap"                                              -> everything watched so far

``moment_of`` reads the question; ``lines_for`` picks the subtitle lines that answer it; ``quote_lines`` is
the answer when there is no model (the lines themselves, with their times).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.skills.watch.cues import Cue, fmt_ts

JUST_NOW_SPAN_S = 15.0  # "what did she just say?" looks this far back from the current position
AT_BEFORE_S = 4.0  # "what happened at 12:30?" shows the lines from a little before ...
AT_AFTER_S = 6.0  # ... to a little after that moment
MAX_LINES = 8

_CLOCK = re.compile(r"(?<![\d:])(?:(\d{1,2}):)?([0-5]?\d):([0-5]\d)(?![\d:])")
_ZH_TIME = re.compile(
    r"(?:(\d{1,2})\s*(?:个?小时|h\b))?\s*(?:第\s*)?(\d{1,3})\s*(?:分钟|分|min(?:ute)?s?\b|m\b)"
    r"\s*(?:(\d{1,2})\s*(?:秒钟|秒|s(?:ec(?:ond)?s?)?\b))?",
    re.IGNORECASE,
)
_AGO = re.compile(
    r"(\d{1,3})\s*(?:(分钟|分|min(?:ute)?s?\b)|(秒钟|秒|s(?:ec(?:ond)?s?)?\b))\s*(?:前|之前|以前|ago\b)",
    re.IGNORECASE,
)
_MINUTE_WORD = re.compile(r"\b(?:at\s+)?minute\s+(\d{1,3})\b", re.IGNORECASE)
_JUST_NOW = re.compile(
    r"刚才|刚刚|方才|刚说|just\s+now|a\s+(?:moment|second|minute)\s+ago|just\s+(?:said|say|says|told|happened)|"
    r"did\s+(?:he|she|they|it|that|someone|the\s+\w+)\s+just|what\s+was\s+(?:that|said)\b|刚刚那句|上一句|这句",
    re.IGNORECASE,
)
_SAID = re.compile(
    r"说了?什么|说啥|讲了?什么|唱了?什么|什么意思|\bsa(?:y|id)\b|\bsing(?:s|ing)?\b|\bsang\b|台词|歌词",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Moment:
    """What a question is about: ``now`` (the session's current position, or ``back`` seconds before it)
    or a position ``at`` seconds into the media."""

    now: bool
    at: float = 0.0
    back: float = 0.0


def moment_of(question: str, *, running: bool) -> Moment | None:
    """The moment a question asks about, or None when it is not about a moment of the media. A question
    about what was said, without a time, means "just now" while a session is running."""
    m = _AGO.search(question)
    if m:
        return Moment(True, back=int(m.group(1)) * (60 if m.group(2) else 1))
    m = _CLOCK.search(question)
    if m:
        h, mi, s = int(m.group(1) or 0), int(m.group(2)), int(m.group(3))
        return Moment(False, h * 3600 + mi * 60 + s)
    m = _MINUTE_WORD.search(question)
    if m:
        return Moment(False, int(m.group(1)) * 60)
    for m in _ZH_TIME.finditer(question):
        if m.group(2) is None or not m.group(0).strip():
            continue
        h, mi, s = int(m.group(1) or 0), int(m.group(2)), int(m.group(3) or 0)
        return Moment(False, h * 3600 + mi * 60 + s)
    if _JUST_NOW.search(question):
        return Moment(True)
    if running and _SAID.search(question):
        return Moment(True)
    return None


def lines_for(cues: list[Cue], moment: Moment, position: float) -> list[Cue]:
    """The lines that answer a question about ``moment`` (``position`` is where the session is now)."""
    if moment.now:
        position = max(0.0, position - moment.back)
        said = [c for c in cues if c.start <= position + 0.5 and c.end >= position - JUST_NOW_SPAN_S]
        if not said:  # a quiet stretch: the last things said before it
            said = [c for c in cues if c.start <= position][-3:]
        return said[-MAX_LINES:]
    at = moment.at
    near = [c for c in cues if c.end >= at - AT_BEFORE_S and c.start <= at + AT_AFTER_S]
    if not near:
        before = [c for c in cues if c.start <= at][-2:]
        after = [c for c in cues if c.start > at][:2]
        near = before + after
    return near[:MAX_LINES]


def spread(cues: list[Cue], upto: float | None, count: int) -> list[Cue]:
    """``count`` lines spread evenly over the cues (up to ``upto`` seconds): a sample of a whole film."""
    pool = [c for c in cues if upto is None or c.start <= upto]
    if len(pool) <= count:
        return pool
    step = len(pool) / count
    return [pool[int(i * step)] for i in range(count)]


def cue_lines(cues: list[Cue]) -> list[str]:
    return [f"[{fmt_ts(c.start)}] {c.text}" for c in cues]
