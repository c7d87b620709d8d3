"""What is inside a media file: its duration and its text subtitle tracks (PyAV, FFmpeg's libraries).

PyAV is a maintained binding that ships its own FFmpeg build, so nothing needs installing on the host. Only
text subtitle tracks (SubRip, ASS, WebVTT, MP4's mov_text) are read; picture-based ones (DVD, Blu-ray) would
need OCR and are skipped. Everything here is blocking: call it from a worker thread.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bot.skills.watch.cues import Cue, clean_cues

log = logging.getLogger("paibot.skills.watch")

TEXT_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
# Chinese first, then English, then whatever comes first: the groups this serves read Chinese.
PREFERRED_LANGUAGES = ("chi", "zho", "zh", "chs", "eng", "en")
_ASS_OVERRIDE = re.compile(r"\{[^}]*\}")


class MediaError(ValueError):
    """A media file PyAV cannot open (the reason is in the message, for the log)."""


@dataclass(frozen=True, slots=True)
class MediaInfo:
    duration: float | None
    has_video: bool
    has_audio: bool
    subtitle_tracks: int


def _open(source: Path | BinaryIO) -> Any:
    import av

    try:
        return av.open(str(source) if isinstance(source, Path) else source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"not a readable media file: {exc}") from exc


def probe(source: Path | BinaryIO) -> MediaInfo:
    with _open(source) as container:
        duration = container.duration / 1_000_000 if container.duration else None
        return MediaInfo(
            duration=duration,
            has_video=bool(container.streams.video),
            has_audio=bool(container.streams.audio),
            subtitle_tracks=sum(1 for s in container.streams.subtitles if _codec(s) in TEXT_CODECS),
        )


def _codec(stream: Any) -> str:
    return str(getattr(stream.codec_context, "name", "") or "")


def _pick(streams: list[Any]) -> Any | None:
    text = [s for s in streams if _codec(s) in TEXT_CODECS]
    for lang in PREFERRED_LANGUAGES:
        for s in text:
            if (s.language or "").lower() == lang:
                return s
    return text[0] if text else None


def read_embedded(source: Path | BinaryIO) -> list[Cue]:
    """The cues of the media's best text subtitle track (Chinese preferred), or [] when it has none."""
    with _open(source) as container:
        stream = _pick(list(container.streams.subtitles))
        if stream is None:
            return []
        base = stream.time_base
        cues: list[Cue] = []
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                start = float(packet.pts * base)
                end = start + float((packet.duration or 0) * base)
                for item in packet.decode():
                    for rect in getattr(item, "rects", None) or [item]:
                        text = _rect_text(rect)
                        if text:
                            cues.append(Cue(start, max(end, start), text))
        except Exception as exc:  # a damaged track: keep what was read, say why in the log
            log.warning("stopped reading a subtitle track early: %s", exc)
        return clean_cues(cues)


def _rect_text(rect: Any) -> str:
    raw = getattr(rect, "dialogue", None) or getattr(rect, "text", None) or b""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return _ASS_OVERRIDE.sub("", text).replace("\\N", " ").replace("\\n", " ").strip()
