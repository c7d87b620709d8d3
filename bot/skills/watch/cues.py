"""Subtitle and lyric cues: reading SRT, WebVTT, ASS/SSA and LRC files into one list of timed lines.

SRT, WebVTT and ASS/SSA (the usual format of fan-subtitled films) are read with pysubs2, a maintained library
that handles their timing syntaxes and strips styling (``<i>``, ``{\\an8}``) to plain text. LRC (song lyrics,
``[01:02.50]line``) is a few lines of its own below: pysubs2 does not read it.

Files from members are untrusted and often old: the text encoding is guessed (UTF-8 with or without a BOM,
UTF-16 with a BOM, else GB18030, which also reads GBK and GB2312, the usual encodings of Chinese subtitle
files), and at most ``MAX_CUES`` cues of at most ``MAX_CUE_CHARS`` characters each are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CUES = 20_000
MAX_CUE_CHARS = 400
MAX_SUBTITLE_BYTES = 5 * 1024 * 1024
SUBTITLE_EXTENSIONS = {".srt": "srt", ".vtt": "vtt", ".ass": "ass", ".ssa": "ssa", ".lrc": "lrc"}


class SubtitleError(ValueError):
    """A subtitle file that cannot be read (what is wrong is in the message, for the log)."""


@dataclass(frozen=True, slots=True)
class Cue:
    """One timed line: ``start`` and ``end`` in media seconds."""

    start: float
    end: float
    text: str


def subtitle_format(name: str, mime: str = "") -> str | None:
    """``"srt"``, ``"vtt"``, ``"ass"``, ``"ssa"`` or ``"lrc"`` for a subtitle file name or type, else None."""
    lower = name.lower()
    for ext, fmt in SUBTITLE_EXTENSIONS.items():
        if lower.endswith(ext):
            return fmt
    return {"text/vtt": "vtt", "application/x-subrip": "srt", "text/x-ssa": "ass"}.get(
        mime.split(";")[0].strip()
    )


def decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def parse_subtitles(data: bytes, fmt: str) -> list[Cue]:
    """The cues of a subtitle file in time order; ``SubtitleError`` when it holds none."""
    if len(data) > MAX_SUBTITLE_BYTES:
        raise SubtitleError(f"subtitle file larger than {MAX_SUBTITLE_BYTES} bytes")
    text = decode(data)
    cues = parse_lrc(text) if fmt == "lrc" else _parse_with_pysubs2(text, fmt)
    if not cues:
        raise SubtitleError(f"no timed lines found in the {fmt} file")
    return cues


def _parse_with_pysubs2(text: str, fmt: str) -> list[Cue]:
    import pysubs2

    if fmt == "vtt":
        text, fmt = vtt_as_srt(text), "srt"
    try:
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
    except Exception as exc:  # pysubs2 raises a handful of its own types and ValueError for malformed files
        raise SubtitleError(f"not a readable {fmt} file: {exc}") from exc
    return clean_cues(
        Cue(e.start / 1000, e.end / 1000, e.plaintext)
        for e in subs
        if not e.is_comment and e.type == "Dialogue"
    )


_VTT_TIMING = re.compile(r"^\s*((?:\d+:)?\d{1,2}:\d{2}\.\d{3})\s+-->\s+((?:\d+:)?\d{1,2}:\d{2}\.\d{3})")
_VTT_TAG = re.compile(r"</?(?:v|c|i|b|u|ruby|rt|lang)(?:[ .][^>]*)?>|<\d{2}:[\d:.]+>")


def vtt_as_srt(text: str) -> str:
    """WebVTT rewritten as SRT: blocks without a timing line (the header, NOTE, STYLE, REGION) and cue
    identifiers go, cue settings and voice/class tags are dropped, so the SRT reader sees only cues."""
    out: list[str] = []
    n = 0
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = block.strip("\n").split("\n")
        at = next((i for i, line in enumerate(lines) if _VTT_TIMING.match(line)), None)
        if at is None:
            continue
        m = _VTT_TIMING.match(lines[at])
        assert m is not None
        start, end = (_pad_hours(x).replace(".", ",") for x in m.groups())
        body = [_VTT_TAG.sub("", line) for line in lines[at + 1 :]]
        n += 1
        out.append(f"{n}\n{start} --> {end}\n" + "\n".join(body))
    return "\n\n".join(out) + "\n"


def _pad_hours(stamp: str) -> str:
    return stamp if stamp.count(":") == 2 else "00:" + stamp


_LRC_STAMP = re.compile(r"\[(\d{1,3}):(\d{1,2}(?:[.:]\d{1,3})?)\]")
_LRC_OFFSET = re.compile(r"^\s*\[offset:\s*([+-]?\d+)\s*\]", re.IGNORECASE | re.MULTILINE)
LAST_LYRIC_S = 5.0  # how long the last line of a song is shown (LRC has no end times)


def parse_lrc(text: str) -> list[Cue]:
    """LRC lyrics: every ``[mm:ss.xx]`` stamp starts a line (a line may carry several stamps, for a chorus);
    a line lasts until the next one. ``[offset:+/-ms]`` shifts every stamp (positive means earlier)."""
    m = _LRC_OFFSET.search(text)
    shift = -int(m.group(1)) / 1000 if m else 0.0
    timed: list[tuple[float, str]] = []
    for raw in text.splitlines():
        stamps = []
        rest = raw.strip()
        while (s := _LRC_STAMP.match(rest)) is not None:
            stamps.append(int(s.group(1)) * 60 + float(s.group(2).replace(":", ".")))
            rest = rest[s.end() :]
        rest = re.sub(r"<\d{1,3}:\d{1,2}(?:\.\d{1,3})?>", "", rest)  # enhanced LRC's per-word stamps
        timed += [(max(0.0, t + shift), rest.strip()) for t in stamps]
    timed.sort(key=lambda pair: pair[0])
    cues = [
        Cue(start, timed[i + 1][0] if i + 1 < len(timed) else start + LAST_LYRIC_S, line)
        for i, (start, line) in enumerate(timed)
    ]
    return clean_cues(cues)


def clean_cues(cues: Iterable[Cue]) -> list[Cue]:
    """Cues with text, sane times, one line each (at most ``MAX_CUE_CHARS``), sorted, at most ``MAX_CUES``."""
    out: list[Cue] = []
    for cue in cues:
        text = " ".join(cue.text.split())
        if not text or cue.start < 0 or cue.end < cue.start:
            continue
        out.append(Cue(round(cue.start, 3), round(cue.end, 3), text[:MAX_CUE_CHARS]))
        if len(out) >= MAX_CUES:
            break
    out.sort(key=lambda c: (c.start, c.end))
    return out


def fmt_ts(seconds: float) -> str:
    """``750`` -> ``"12:30"``; ``3723`` -> ``"1:02:03"`` (how people write a moment of a film)."""
    total = int(max(0.0, seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def window(cues: list[Cue], start: float, end: float) -> list[Cue]:
    """The cues showing at any moment of ``[start, end]`` (in time order)."""
    return [c for c in cues if c.end >= start and c.start <= end]


def to_webvtt(cues: Iterable[Cue]) -> str:
    """The cues as a WebVTT file (what a browser's ``<track>`` reads)."""

    def stamp(t: float) -> str:
        ms = int(round(t * 1000))
        h, rest = divmod(ms, 3_600_000)
        m, rest = divmod(rest, 60_000)
        s, ms = divmod(rest, 1000)
        return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"

    body = [f"{stamp(c.start)} --> {stamp(c.end)}\n{c.text.replace('-->', '->')}" for c in cues]
    return "WEBVTT\n\n" + "\n\n".join(body) + "\n"
