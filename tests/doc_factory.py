"""Documents generated at test time, so the tests need no binary fixtures: minimal valid PDFs (objects and an
xref table written by hand, Helvetica text, optional invisible text), DOCX files (python-docx) and images
(Pillow)."""

from __future__ import annotations

import io


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str], hidden: dict[int, str] | None = None) -> bytes:
    """One page per entry (lines split on newlines). ``hidden[i]`` is drawn on page ``i`` in text render mode
    3 (invisible on screen, yet present in the text layer, like injected instructions in a real attack)."""
    hidden = hidden or {}
    objects: dict[int, bytes] = {1: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"}
    kids: list[int] = []
    next_id = 3
    for i, text in enumerate(pages):
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 780 Td"]
        ops += [f"({_pdf_escape(line)}) Tj T*" for line in text.split("\n")]
        if i in hidden:
            ops.append(f"3 Tr ({_pdf_escape(hidden[i])}) Tj 0 Tr")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        content_id, page_id = next_id, next_id + 1
        next_id += 2
        objects[content_id] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 1 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        kids.append(page_id)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    catalog = next_id
    objects[catalog] = b"<< /Type /Catalog /Pages 2 0 R >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for oid in sorted(objects):
        offsets[oid] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (oid, objects[oid])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (catalog + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[oid] for oid in range(1, catalog + 1))
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (catalog + 1, catalog, xref)
    return bytes(out)


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None, hidden: str = "") -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    if hidden:
        run = document.add_paragraph().add_run(hidden)
        run.font.hidden = True
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_image(width: int = 40, height: int = 20, fmt: str = "PNG") -> bytes:
    """Left half pure red, right half pure blue: easy to check crops, flips and rotations by pixel."""
    from PIL import Image

    img = Image.new("RGB", (width, height), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, width // 2, height))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()
