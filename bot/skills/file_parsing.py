"""Documents posted to a group turned into plain text, page by page, then into overlapping chunks.

Pure and blocking: the files skill runs ``parse_document`` and ``chunk_pages`` on a worker thread
(``asyncio.to_thread``). Nothing here touches the network, memory or the LLM, and nothing in a document is
ever *executed*: its text is data like any chat message.

Supported: PDF (pypdf), DOCX (python-docx), plain text, Markdown and CSV. Limits (``ParseLimits``) bound the
work a hostile file can cause: pages read, characters of text kept, and for DOCX (a zip) the uncompressed size
of its parts, checked before anything is decompressed. A file that cannot be read raises ``FileRejected``
with a short, operator-readable reason; a file over the page or text limit is read up to the limit and the
result says so (``truncated``).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from dataclasses import dataclass

from bot.errors import PaibotError
from bot.i18n import N_, Text


TEXT_EXTENSIONS = {".txt": "text", ".text": "text", ".log": "text", ".md": "markdown", ".markdown": "markdown",
                   ".csv": "csv", ".tsv": "csv"}  # fmt: skip
MIME_KINDS = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
}


class FileRejected(PaibotError):
    """A posted file that will not be read (unsupported, corrupt, encrypted, too large)."""


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_pages: int = 50
    max_text_chars: int = 2_000_000
    max_unzipped_bytes: int = 50 * 1024 * 1024  # DOCX parts, checked before decompressing


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """``pages`` are ``(page number or None, text)``; ``total_pages`` counts pages in the file (PDF)."""

    kind: str
    pages: tuple[tuple[int | None, str], ...]
    total_pages: int | None = None
    truncated: bool = False

    @property
    def chars(self) -> int:
        return sum(len(t) for _, t in self.pages)


@dataclass(frozen=True, slots=True)
class Chunk:
    n: int
    page: int | None
    text: str


def document_kind(name: str, mime: str) -> str | None:
    """``pdf`` / ``docx`` / ``text`` / ``markdown`` / ``csv``, by extension first (platforms often send a
    generic mime type), else by mime type; None when the file is not a supported document."""
    low = name.lower()
    if low.endswith(".pdf"):
        return "pdf"
    if low.endswith(".docx"):
        return "docx"
    for ext, kind in TEXT_EXTENSIONS.items():
        if low.endswith(ext):
            return kind
    return MIME_KINDS.get(mime.split(";")[0].strip().lower())


def parse_document(name: str, mime: str, data: bytes, limits: ParseLimits = ParseLimits()) -> ParsedDocument:
    """The text of a document. Raises ``FileRejected`` when it cannot or must not be read."""
    kind = document_kind(name, mime)
    if kind is None:
        raise FileRejected(Text(N_("{name}: not a supported document type ({mime})"), name=name, mime=mime or "?"))
    if kind == "pdf":
        return _parse_pdf(data, limits)
    if kind == "docx":
        return _parse_docx(data, limits)
    text = decode_text(data)
    if kind == "csv":
        text = _csv_as_text(text, tab=name.lower().endswith(".tsv"))
    return _capped(kind, [(None, text)], None, limits)


def decode_text(data: bytes) -> str:
    """Decode a text file: BOMs first, then UTF-8, then GB18030 (common for Chinese files), then Latin-1."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(enc, errors="replace")
    for enc in ("utf-8", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _csv_as_text(text: str, tab: bool) -> str:
    """Each row as ``header: value; header: value`` so a row reads on its own inside a chunk."""
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if tab else ","))
    except csv.Error as exc:
        raise FileRejected(Text(N_("not a readable CSV file ({error})"), error=exc)) from exc
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    if not body:
        return ", ".join(header)
    lines = []
    for row in body:
        cells = [f"{h.strip() or f'column {i + 1}'}: {v.strip()}" for i, (h, v) in enumerate(zip(header, row))]
        extra = [v.strip() for v in row[len(header):]]
        lines.append("; ".join(cells + extra))
    return "\n".join(lines)


def _parse_pdf(data: bytes, limits: ParseLimits) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileRejected(Text(N_("the PDF is encrypted")))
        total = len(reader.pages)
        pages: list[tuple[int | None, str]] = []
        for i in range(min(total, limits.max_pages)):
            pages.append((i + 1, reader.pages[i].extract_text() or ""))
            if sum(len(t) for _, t in pages) > limits.max_text_chars:
                break
    except FileRejected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise FileRejected(Text(N_("not a readable PDF ({error})"), error=f"{type(exc).__name__}: {exc}")) from exc
    except Exception as exc:  # pypdf raises assorted errors on hostile input; any of them means "unreadable"
        raise FileRejected(Text(N_("not a readable PDF ({error})"), error=type(exc).__name__)) from exc
    doc = _capped("pdf", pages, total, limits)
    if total > limits.max_pages:
        return ParsedDocument(doc.kind, doc.pages, total, True)
    return doc


def _parse_docx(data: bytes, limits: ParseLimits) -> ParsedDocument:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            unzipped = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileRejected(Text(N_("not a readable DOCX file ({error})"), error=exc)) from exc
    if unzipped > limits.max_unzipped_bytes:
        raise FileRejected(Text(N_("the DOCX unpacks to {size} bytes, over the {limit}-byte limit"), size=unzipped,
                                limit=limits.max_unzipped_bytes))
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        parts = [p.text for p in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors...: all mean "unreadable"
        raise FileRejected(Text(N_("not a readable DOCX file ({error})"), error=type(exc).__name__)) from exc
    return _capped("docx", [(None, "\n".join(parts))], None, limits)


def _capped(kind: str, pages: list[tuple[int | None, str]], total: int | None, limits: ParseLimits) -> ParsedDocument:
    kept: list[tuple[int | None, str]] = []
    left = limits.max_text_chars
    truncated = False
    for page, text in pages:
        if len(text) > left:
            text, truncated = text[:left], True
        kept.append((page, text))
        left -= len(text)
        if left <= 0:
            truncated = truncated or len(kept) < len(pages)
            break
    return ParsedDocument(kind, tuple(kept), total, truncated)


# --------------------------------------------------------------------------- chunking

_BREAKS = re.compile(r"\n\s*\n|(?<=[.!?。！？；;])\s*|\n")


def chunk_pages(
    pages: tuple[tuple[int | None, str], ...], target: int = 1000, overlap: int = 150, max_len: int = 1200
) -> list[Chunk]:
    """Split each page's text into chunks of about ``target`` characters (never more than ``max_len``),
    breaking at paragraph or sentence ends where possible; each chunk repeats the last ~``overlap``
    characters of the one before it on the same page. A chunk never spans two pages, so it keeps its page."""
    chunks: list[Chunk] = []
    for page, raw in pages:
        text = re.sub(r"[ \t\r\f\v]+", " ", raw).strip()
        start = 0
        while start < len(text):
            end = _cut(text, start, target, max_len)
            piece = text[start:end].strip()
            if piece:
                chunks.append(Chunk(len(chunks), page, piece))
            if end >= len(text):
                break
            start = _overlap_start(text, start, end, overlap)
    return chunks


def _cut(text: str, start: int, target: int, max_len: int) -> int:
    """Where a chunk starting at ``start`` ends: the last break between ``target*0.6`` and ``max_len``."""
    hard = min(len(text), start + max_len)
    if hard == len(text) and hard - start <= max_len:
        return hard
    best = None
    for m in _BREAKS.finditer(text, start + int(target * 0.6), hard):
        best = m.end()
        if best >= start + target:
            break
    if best is None:
        space = text.rfind(" ", start + int(target * 0.6), min(hard, start + target))
        if space == -1:
            space = text.rfind(" ", start + int(target * 0.6), hard)
        best = space + 1 if space > start else hard
    return best


def _overlap_start(text: str, start: int, end: int, overlap: int) -> int:
    """Begin the next chunk ~``overlap`` characters before ``end``, at a sentence or word start, always
    moving forward."""
    want = max(start + 1, end - overlap)
    brk = next((m.end() for m in _BREAKS.finditer(text, want, end) if m.end() < end), None)
    if brk is None:
        space = text.find(" ", want, end)
        brk = space + 1 if space != -1 else want
    return brk if brk < end else end
