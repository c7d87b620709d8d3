"""Files of the web group: safe names, sniffed types, and the durable blob directory.

Posted and bot-written files live under ``<data_dir>/web_files/<group>/<file id>``; their metadata (name,
type, size, owning message) is a row in ``web.db`` (``adapters.web.store``). Contract:

* A file id is a random URL-safe token (unguessable), also used as ``Attachment.source``.
* Bytes are made durable before the row naming them is committed: ``BlobDir.stage`` writes to a temp file
  in the group's directory, ``commit`` fsyncs it and renames it into place (then fsyncs the directory). A
  crash can leave an orphan blob or a temp file, never a row without bytes; ``sweep`` removes the leftovers
  at start-up.
* A file counts as an image only when its first bytes are PNG, JPEG, GIF or WebP, whatever the client
  claimed; only those four types are ever served inline (``inline_type``).

Every ``BlobDir`` method is blocking; callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bot.errors import PaibotError

MAX_FILE_NAME_CHARS = 120
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_GROUP = re.compile(r"^[0-9]{1,20}$")
_IMAGE_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    # (magic bytes, offset, mime, extension)
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
)
SNIFF_BYTES = 16
# Media a player of the page may stream (``adapters.web.watch``), by what the first bytes say. Anything else
# stays a plain file, whatever type or name the client gave it.
MEDIA_TYPES = frozenset({
    "video/mp4", "video/webm", "video/ogg", "video/quicktime", "video/x-matroska",
    "audio/mpeg", "audio/mp4", "audio/ogg", "audio/webm", "audio/wav", "audio/flac", "audio/aac",
})  # fmt: skip
# Served with their own type (as downloads); anything else goes out as application/octet-stream, so a file
# can never be rendered as a page or script of this origin.
_PLAIN_DOWNLOAD_TYPES = frozenset({
    "application/pdf", "text/plain", "text/csv", "text/markdown", "text/tab-separated-values",
    "application/zip", "application/json",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "audio/mpeg", "audio/ogg", "video/mp4",
})  # fmt: skip


class WebFileError(PaibotError):
    """A file of the web group could not be stored or read."""


@dataclass(frozen=True, slots=True)
class SniffedType:
    kind: str  # "image" | "video" | "audio" | "file"
    mime: str


def new_file_id() -> str:
    return secrets.token_urlsafe(18)


def valid_file_id(value: str) -> bool:
    return bool(_ID.match(value))


def safe_file_name(raw: str | None, fallback: str = "file") -> str:
    """A display and download name with no path, no control or bidi-override characters, at most
    ``MAX_FILE_NAME_CHARS`` long (the extension kept), never empty, never starting with a dot."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # Cc, Cf (bidi), Cs, Co, Cn
    name = " ".join(name.split()).strip(" .")
    if not name:
        return fallback
    if len(name) > MAX_FILE_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10 and stem:
            name = stem[: MAX_FILE_NAME_CHARS - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:MAX_FILE_NAME_CHARS]
    return name


def sniff(head: bytes, name: str, declared: str | None) -> SniffedType:
    """The kind and type of a file from its first bytes (``SNIFF_BYTES`` are enough), its name and the type
    the client declared. Images are recognised by magic bytes only; a client claiming ``image/*`` for other
    bytes gets a plain file."""
    for magic, offset, mime, _ in _IMAGE_MAGIC:
        if head[offset: offset + len(magic)] == magic:
            return SniffedType("image", mime)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return SniffedType("image", "image/webp")
    if head.startswith(b"%PDF-"):
        return SniffedType("file", "application/pdf")
    media = sniff_media(head, name, declared)
    if media is not None:
        return media
    claimed = (declared or "").split(";", 1)[0].strip().lower()
    if _MIME.match(claimed) and not claimed.startswith("image/") and claimed != "application/octet-stream":
        return SniffedType("file", claimed)
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed and not guessed.startswith("image/"):
        return SniffedType("file", guessed)
    return SniffedType("file", "application/octet-stream")


def sniff_media(head: bytes, name: str, declared: str | None) -> SniffedType | None:
    """Video or audio by magic bytes (the name or declared type only chooses between video and audio where
    the container holds either: MP4, WebM/Matroska, Ogg)."""
    lower = name.lower()
    claimed = (declared or "").split(";", 1)[0].strip().lower()
    audio_hint = claimed.startswith("audio/") or lower.endswith((".m4a", ".mp3", ".ogg", ".oga", ".opus", ".weba"))
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ") or audio_hint:
            return SniffedType("audio", "audio/mp4")
        return SniffedType("video", "video/quicktime" if brand == b"qt  " else "video/mp4")
    if head.startswith(b"\x1aE\xdf\xa3"):
        if audio_hint:
            return SniffedType("audio", "audio/webm")
        return SniffedType("video", "video/x-matroska" if lower.endswith((".mkv", ".mka")) else "video/webm")
    if head.startswith(b"OggS"):
        return SniffedType("video", "video/ogg") if lower.endswith(".ogv") else SniffedType("audio", "audio/ogg")
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return SniffedType("audio", "audio/mpeg")  # MP3 (ID3 tag or an MPEG audio frame header)
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return SniffedType("audio", "audio/aac")  # ADTS
    if head.startswith(b"fLaC"):
        return SniffedType("audio", "audio/flac")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return SniffedType("audio", "audio/wav")
    return None


def media_type(kind: str, mime: str) -> str | None:
    """The Content-Type to stream a stored media file with (players need it inline), or None."""
    return mime if kind in ("video", "audio") and mime in MEDIA_TYPES else None


def inline_type(kind: str, mime: str) -> str | None:
    """The Content-Type to show a stored file inline with, or None: it must be downloaded."""
    if kind == "image" and mime in {"image/png", "image/jpeg", "image/gif", "image/webp"}:
        return mime
    return None


def download_type(mime: str) -> str:
    return mime if mime in _PLAIN_DOWNLOAD_TYPES else "application/octet-stream"


class BlobDir:
    """The directory tree holding the web group's file bytes (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _group_dir(self, group: str) -> Path:
        if not _GROUP.match(group):
            raise WebFileError(f"not a web group number: {group!r}")
        return self.root / group

    def path(self, group: str, file_id: str) -> Path:
        if not valid_file_id(file_id):
            raise WebFileError(f"not a web file id: {file_id!r}")
        return self._group_dir(group) / file_id

    def stage(self, group: str) -> Path:
        """A new, empty temp file in ``group``'s directory for an upload to be written to."""
        folder = self._group_dir(group)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temp = folder / f".tmp-{new_file_id()}"
            temp.touch(exist_ok=False)
        except OSError as exc:
            raise WebFileError(f"cannot create a file in {folder}: {exc}") from exc
        return temp

    def write(self, group: str, data: bytes) -> Path:
        """Stage ``data`` (the bot's files, already in memory)."""
        temp = self.stage(group)
        try:
            temp.write_bytes(data)
        except OSError as exc:
            self.remove(temp)
            raise WebFileError(f"cannot write {temp}: {exc}") from exc
        return temp

    def commit(self, temp: Path, group: str, file_id: str) -> None:
        """Make a staged file durable under its id: fsync, rename into place, fsync the directory."""
        final = self.path(group, file_id)
        try:
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise WebFileError(f"cannot store file {file_id}: {exc}") from exc

    def read(self, group: str, file_id: str) -> bytes:
        try:
            return self.path(group, file_id).read_bytes()
        except OSError as exc:
            raise WebFileError(f"the bytes of file {file_id} are missing: {exc}") from exc

    @staticmethod
    def remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise WebFileError(f"cannot remove {path}: {exc}") from exc

    def sweep(self, known: set[str]) -> int:
        """Remove temp files and blobs no row names (what a crash mid-upload leaves). Only at start-up."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.name.startswith(".tmp-") or (entry.is_file() and entry.name not in known):
                    self.remove(entry)
                    removed += 1
        return removed
