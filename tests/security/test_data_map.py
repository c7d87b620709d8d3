"""SECURITY.md's data map is complete: after a member's content went through every input path (the privacy
probe's scenario), every table and file under the data directory is listed in the map, and every one that
holds a marker of member content is listed as holding member content.

A new table or file that keeps something fails this test until the map (and so the documentation of what
``/forget-me``, ``/optout`` and retention do to it) says what it is.
"""

from __future__ import annotations

import fnmatch
import re
import sqlite3
from pathlib import Path

import aiohttp

from bot.app import App
from tests.security import disk
from tests.security.test_privacy_probe import ProbeModel, Site, feed_her_content, import_her_history, settings_for
from tests.web_members import author_id_of, member_headers

SECURITY_MD = Path(__file__).resolve().parents[2] / "SECURITY.md"
SKIP_SUFFIXES = ("-wal", "-shm", "-journal")


def data_map() -> dict[str, str]:
    """``{where pattern: member content column}`` from the table between the data-map markers."""
    text = SECURITY_MD.read_text(encoding="utf-8")
    block = text.split("<!-- data-map:start", 1)[1].split("<!-- data-map:end -->", 1)[0]
    rows: dict[str, str] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([^`]+)`", cells[0]) if len(cells) >= 3 else None
        if m:
            rows[m.group(1)] = cells[2]
    return rows


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    return sorted(n for (n,) in names if not n.startswith("sqlite_"))


def inventory(data: Path) -> dict[str, bytes]:
    """Every table (``file:table``) and file or directory of files the bot created, with its bytes (a
    table's rows as text) for the content check."""
    out: dict[str, bytes] = {}
    for path in sorted(data.rglob("*")):
        rel = path.relative_to(data)
        top = rel.parts[0]
        if top == "chroma" or top.startswith("chroma.broken-") or top == "web_files":
            key = f"{top}/"
            if path.is_file():
                out[key] = out.get(key, b"") + path.read_bytes()
            else:
                out.setdefault(key, b"")
            continue
        if path.is_dir() or path.name.endswith(SKIP_SUFFIXES):
            continue
        if path.read_bytes()[:16] == disk.SQLITE_MAGIC:
            with sqlite3.connect(path) as conn:
                for table in tables(path):
                    rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
                    out[f"{rel}:{table}"] = "\n".join(map(repr, rows)).encode() + b"".join(
                        v for row in rows for v in row if isinstance(v, bytes))
        else:
            out[str(rel)] = path.read_bytes()
    return out


async def test_every_table_and_file_is_in_the_data_map_and_content_is_marked_as_such(tmp_path):
    data = tmp_path / "data"
    paths = ("text", "reply", "file_name", "file_text", "image", "caption", "reminder", "todo", "poll",
             "imported", "quoted")  # fmt: skip
    m = {p: disk.marker(p.replace("_", "")) for p in (*paths, "bob")}
    app = App(settings_for(data), llm=ProbeModel(m["caption"]))
    await app.start()
    try:
        web = app.services.adapters["web"]  # type: ignore[union-attr]
        async with aiohttp.ClientSession(base_url=web.base_url) as http:
            created = await http.post("/api/groups", json={"name": "Sailing"}, headers=await member_headers(http, "Alice"))
            site = Site(app, http, await created.json())
            await feed_her_content(site, m)
            await import_her_history(app, author_id_of(http, "Alice"), site.group, m["imported"], tmp_path)
            await app.services.memory.flush()  # type: ignore[union-attr]
    finally:
        await app.stop()
    mapped = data_map()
    found = inventory(data)
    unmapped = [e for e in found if not any(fnmatch.fnmatchcase(e, pattern) for pattern in mapped)]
    holding = {e for e, raw in found.items() if any(p in raw for mk in m.values() for p in disk.patterns(mk))}
    mislabelled = [
        e for e in holding
        if not any(fnmatch.fnmatchcase(e, p) and mapped[p] in ("yes", "derived") for p in mapped)
    ]  # fmt: skip
    print(f"\ndata map: {len(mapped)} rows; the bot created {len(found)} tables and files, {len(holding)} of "
          f"them holding member content: {sorted(holding)}")
    assert unmapped == [], f"not in SECURITY.md's data map: {unmapped}"
    assert mislabelled == [], f"hold member content but the map says they do not: {mislabelled}"
    assert {"memory.sqlite3:records", "web.db:messages", "skills.sqlite3:reminders", "web_files/"} <= holding
