"""Where a session's lines come from, and how they go into memory.

    subtitle files shared with the media (SRT, VTT, ASS, LRC)   -> ``subtitles_of``
    else a text track inside the media file (PyAV)              -> ``embedded_of``
    else, when the operator configured one, a transcription     -> ``transcribe_of``

Media bytes are read where they lie when the adapter has them on disk (``bot.ports.LocalAttachments``, the
web group), else fetched (``AttachmentFetcher``) up to ``limits.max_attachment_bytes`` into a temporary file. Parsing
and decoding run on worker threads. In memory, lines are kept as file chunks (``MemoryRecord(kind=FILE)``: evidence, like a document) of
about a minute, each with its media times and session in ``meta`` and the times in its text, authored by the
member who shared them (so ``/forget-me`` and retention reach them like their messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from bot.errors import DeliveryError
from bot.events import Attachment, ChatRef
from bot.ports import FILE, MemoryRecord
from bot.services import Services
from bot.skills.watch.cues import (
    MAX_SUBTITLE_BYTES,
    Cue,
    SubtitleError,
    clean_cues,
    fmt_ts,
    parse_subtitles,
    subtitle_format,
)
from bot.skills.watch.embedded import MediaError, probe, read_embedded

log = logging.getLogger("paibot.skills.watch")

CHUNK_SECONDS = 60.0
CHUNK_LINES = 14
_VIDEO_EXT = {"mp4", "m4v", "webm", "mkv", "mov", "ogv", "avi", "flv", "ts"}
_AUDIO_EXT = {"mp3", "m4a", "aac", "ogg", "oga", "opus", "flac", "wav", "weba"}
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


class Transcriber(Protocol):
    """Speech to timed lines (an optional backend, e.g. ``bot.skills.watch.whisper``). ``transcribe`` blocks
    (it is called on a worker thread), reads the media file at ``path`` and returns ``(start, end, text)``
    lines in media seconds; it raises any ``Exception`` when it cannot (the member is told, the log says
    why). It never downloads a model: the operator installs one."""

    def transcribe(self, path: Path) -> list[tuple[float, float, str]]: ...


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def media_kind(att: Attachment) -> str | None:
    """``"video"`` or ``"audio"`` for a media attachment, else None (documents, images, subtitles)."""
    if att.kind in ("video", "audio"):
        return att.kind
    major = att.mime.split("/", 1)[0].lower()
    if major in ("video", "audio"):
        return major
    ext = extension(att.name)
    return "video" if ext in _VIDEO_EXT else "audio" if ext in _AUDIO_EXT else None


def subtitle_files(atts: Sequence[Attachment]) -> list[Attachment]:
    return [a for a in atts if a.kind == "file" and subtitle_format(a.name, a.mime) is not None]


def first_link(text: str) -> str:
    m = _URL.search(text)
    return m.group(0).rstrip(".,;:!?)）。，") if m else ""


def link_kind(url: str) -> str:
    return "audio" if extension(urlsplit(url).path) in _AUDIO_EXT else "video"


def link_title(url: str) -> str:
    parts = urlsplit(url)
    name = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return name or parts.hostname or url


class CueSources:
    """Reads lines and durations for sessions (see the module docstring)."""

    def __init__(self, services: Services, transcriber: Transcriber | None = None) -> None:
        self.s = services
        self.transcriber = transcriber

    async def subtitles_of(self, chat: ChatRef, att: Attachment) -> list[Cue]:
        """The lines of a shared subtitle file; ``SubtitleError`` when it has none (or cannot be fetched)."""
        fmt = subtitle_format(att.name, att.mime)
        if fmt is None:
            raise SubtitleError(f"{att.name} is not a subtitle file")
        fetch = getattr(self.s.adapters.get(chat.platform), "fetch_attachment", None)
        if fetch is None:
            raise SubtitleError(f"the {chat.platform} adapter cannot download files")
        try:
            data = await fetch(att, MAX_SUBTITLE_BYTES)
        except DeliveryError as exc:
            raise SubtitleError(f"could not fetch {att.name}: {exc}") from exc
        return await asyncio.to_thread(parse_subtitles, data, fmt)

    @contextlib.asynccontextmanager
    async def media_file(self, chat: ChatRef, att: Attachment) -> AsyncIterator[Path]:
        """A path to the media's bytes: where the adapter keeps them, or a temporary copy."""
        adapter = self.s.adapters.get(chat.platform)
        local = getattr(adapter, "attachment_path", None)
        path = await local(att) if local is not None else None
        if path is not None:
            yield Path(path)
            return
        fetch = getattr(adapter, "fetch_attachment", None)
        if fetch is None:
            raise MediaError(f"the {chat.platform} adapter cannot download files")
        try:
            data = await fetch(att, self.s.settings.limits.max_attachment_bytes)
        except DeliveryError as exc:
            raise MediaError(f"could not fetch {att.name}: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="paibot-watch-") as folder:
            temp = Path(folder) / f"media.{extension(att.name) or 'bin'}"
            await asyncio.to_thread(temp.write_bytes, data)
            yield temp

    async def embedded_of(self, chat: ChatRef, att: Attachment) -> tuple[list[Cue], float | None]:
        """The lines of the media's own subtitle track (or []) and its duration (None when unknown)."""
        try:
            async with self.media_file(chat, att) as path:
                info = await asyncio.to_thread(probe, path)
                cues = await asyncio.to_thread(read_embedded, path) if info.subtitle_tracks else []
                return cues, info.duration
        except MediaError as exc:
            # file names are member content: only at DEBUG
            log.info("could not look inside a media file in %s (%s)", chat.key, type(exc).__name__)
            log.debug("could not look inside %s: %s", att.name, exc)
            return [], None

    async def transcribe_of(self, chat: ChatRef, att: Attachment) -> list[Cue]:
        """Lines transcribed from the media's audio; raises when there is no backend or it fails."""
        if self.transcriber is None:
            raise MediaError("no transcription backend is configured")
        async with self.media_file(chat, att) as path:
            lines = await asyncio.to_thread(self.transcriber.transcribe, path)
        return clean_cues(Cue(float(a), float(b), str(t)) for a, b, t in lines)


def subtitle_records(
    *,
    session: str,
    title: str,
    pai: str,
    chat_key: str,
    base: str,
    tag: str,
    cues: Sequence[Cue],
    author_id: str,
    author_name: str,
    sent_at: datetime,
    source: str,
    url: str = "",
) -> list[MemoryRecord]:
    """The lines as memory records: chunks of up to ``CHUNK_SECONDS`` / ``CHUNK_LINES``, ids ``<base>#<tag><n>``."""
    chunks: list[list[Cue]] = []
    for cue in cues:
        if chunks and cue.start - chunks[-1][0].start < CHUNK_SECONDS and len(chunks[-1]) < CHUNK_LINES:
            chunks[-1].append(cue)
        else:
            chunks.append([cue])
    records = []
    for n, chunk in enumerate(chunks):
        start, end = chunk[0].start, max(c.end for c in chunk)
        lines = " / ".join(f"[{fmt_ts(c.start)}] {c.text}" for c in chunk)
        records.append(MemoryRecord(
            id=f"{base}#{tag}{n}", pai=pai, chat_key=chat_key, author_id=author_id, author_name=author_name,
            text=f"{title} [{fmt_ts(start)}–{fmt_ts(end)}]: {lines}", sent_at=sent_at, kind=FILE, url=url,
            meta={"session": session, "title": title, "start": start, "end": end, "source": source, "chunk": n},
        ))  # fmt: skip
    return records
