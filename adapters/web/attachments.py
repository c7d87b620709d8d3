"""The web group's attachments: staging uploads, committing them durably, fetching and serving them.

The order that keeps an acknowledged message's files from ever missing:

    upload part -> ``stage_upload`` streams it to a temp file, refusing past the size limit (413)
    all parts read -> ``commit`` fsyncs and renames each into place (``BlobDir.commit``)
    then the message row and its file rows are written in one transaction (``WebStore.add_message``)
    then the core's inbox commits the event, and only then does the poster get its 200.

Whatever fails on the way removes what was staged or committed for that message (``drop``); a crash leaves
only orphans, which ``sweep`` clears at start-up. ``fetch`` is the ``AttachmentFetcher`` role for the core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from adapters.web.files import (
    SNIFF_BYTES,
    BlobDir,
    WebFileError,
    new_file_id,
    safe_file_name,
    sniff,
    sniff_media,
)
from adapters.web.api import ApiError
from adapters.web.store import NewFile, StoredFile, WebStore
from bot.errors import DeliveryError
from bot.events import Attachment, OutgoingFile

log = logging.getLogger("paibot.web")

MAX_FILES_PER_MESSAGE = 10


@dataclass(frozen=True, slots=True)
class StagedFile:
    """An upload written to a temp file, not yet durable; ``file`` is the row it will become."""

    group: str
    temp: Path
    file: NewFile


class WebAttachments:
    """Owns ``<data_dir>/web_files``; see the module docstring."""

    def __init__(
        self, root: Path, max_bytes: int, max_files: int = MAX_FILES_PER_MESSAGE, max_media_bytes: int = 0
    ) -> None:
        self.blobs = BlobDir(root)
        self.max_bytes = max_bytes
        self.max_files = max_files
        # Videos and audio (to watch together) have their own, larger limit; 0 means the file limit.
        self.max_media_bytes = max(max_media_bytes, max_bytes)

    # ----------------------------------------------------------------- writing

    async def stage_upload(
        self, group: str, name: str | None, declared_mime: str | None, chunks: AsyncIterator[bytes]
    ) -> StagedFile:
        """Write an uploaded file to a temp file; ``ApiError(413)`` (nothing kept) past ``max_bytes`` (past
        ``max_media_bytes`` for a file whose first bytes say video or audio)."""
        temp = await asyncio.to_thread(self.blobs.stage, group)
        size = 0
        head = b""
        limit = self.max_bytes
        try:
            handle: BinaryIO = await asyncio.to_thread(temp.open, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                        if len(head) >= SNIFF_BYTES and sniff_media(head, name or "", declared_mime):
                            limit = self.max_media_bytes
                    if size > limit:
                        raise ApiError(413, f"a file is larger than the {limit}-byte limit")
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
        except BaseException:
            await asyncio.to_thread(self.blobs.remove, temp)
            raise
        if size == 0:
            await asyncio.to_thread(self.blobs.remove, temp)
            raise ApiError(400, f"the file {safe_file_name(name)!r} is empty")
        return self._staged(group, temp, name, declared_mime, head, size)

    async def stage_bytes(self, group: str, out: OutgoingFile) -> StagedFile:
        """Stage a file the bot sends (already in memory); ``DeliveryError`` past ``max_bytes``."""
        if len(out.data) > self.max_bytes:
            raise DeliveryError(f"{out.name} is {len(out.data)} bytes, over the {self.max_bytes}-byte limit")
        try:
            temp = await asyncio.to_thread(self.blobs.write, group, out.data)
        except WebFileError as exc:
            raise DeliveryError(str(exc)) from exc
        return self._staged(group, temp, out.name, out.mime, out.data[:SNIFF_BYTES], len(out.data))

    @staticmethod
    def _staged(
        group: str, temp: Path, name: str | None, declared: str | None, head: bytes, size: int
    ) -> StagedFile:
        clean = safe_file_name(name)
        kind = sniff(head, clean, declared)
        return StagedFile(group, temp, NewFile(new_file_id(), kind.kind, clean, kind.mime, size))

    async def commit(self, staged: Sequence[StagedFile]) -> list[NewFile]:
        """Make every staged file durable under its id (before the rows naming them are written)."""
        for s in staged:
            await asyncio.to_thread(self.blobs.commit, s.temp, s.group, s.file.id)
        return [s.file for s in staged]

    async def drop(self, staged: Sequence[StagedFile]) -> None:
        """Remove staged files, committed or not (their message was refused, or was a retry)."""
        for s in staged:
            try:
                await asyncio.to_thread(self.blobs.remove, s.temp)
                await asyncio.to_thread(self.blobs.remove, self.blobs.path(s.group, s.file.id))
            except WebFileError as exc:
                log.warning("could not remove an unused upload: %s", exc)

    async def drop_stored(self, files: Sequence[StoredFile]) -> None:
        for f in files:
            try:
                await asyncio.to_thread(self.blobs.remove, self.blobs.path(f.group, f.id))
            except WebFileError as exc:
                log.warning("could not remove the bytes of a discarded file: %s", exc)

    async def sweep(self, store: WebStore) -> None:
        known = await asyncio.to_thread(store.file_ids)
        removed = await asyncio.to_thread(self.blobs.sweep, known)
        if removed:
            log.info("removed %d unfinished upload(s) left by a crash", removed)

    # ----------------------------------------------------------------- reading

    async def read(self, stored: StoredFile, max_bytes: int | None = None) -> bytes:
        limit = self.max_bytes if max_bytes is None else max_bytes
        if stored.size > limit:
            raise DeliveryError(f"{stored.name} is {stored.size} bytes, over the {limit}-byte limit")
        try:
            return await asyncio.to_thread(self.blobs.read, stored.group, stored.id)
        except WebFileError as exc:
            raise DeliveryError(str(exc)) from exc

    def path(self, stored: StoredFile) -> Path:
        return self.blobs.path(stored.group, stored.id)


def attachment(f: StoredFile) -> Attachment:
    """The core's view of a stored file (``source`` is the file id)."""
    return Attachment(kind=f.kind, name=f.name, mime=f.mime, size=f.size, source=f.id)


def file_json(f: StoredFile) -> dict[str, object]:
    return {"id": f.id, "name": f.name, "mime": f.mime, "kind": f.kind, "size": f.size,
            "url": f"/api/files/{f.id}"}  # fmt: skip
