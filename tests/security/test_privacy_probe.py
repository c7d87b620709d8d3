"""The privacy probe: after ``/forget-me``, not one byte of what a member said is left anywhere.

A real bot (web group over loopback HTTP, real memory with SQLite, FTS5 and embedded chroma, every default
skill, a vision model that captions images, a model that quotes what it is asked about) takes a member's
content through every input path, each carrying a unique marker:

    a plain message · a reply · a file (its name and its text) · an image (its bytes and the caption the
    model writes) · a reminder · a to-do · a poll · an imported history · a message the bot quotes back

Another member replies to her and asks the bot about her words. Then she sends ``/forget-me``; the bot stops;
every SQLite database is checkpointed and vacuumed; every byte under the data directory, and every log
line at INFO and above, is searched for her markers: zero hits. The other member's marker is still there
(the scan sees content), and a second, stricter scan before any vacuum shows what the bot itself leaves.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.config import parse_settings
from bot.ports import Completion, Usage
from memory.importers import ImportTarget, read_records
from tests.fakes import ScriptedLLM
from tests.security import disk
from tests.web_members import author_id_of, member_headers


def png_with_text(marker: str) -> bytes:
    """A small PNG whose metadata holds ``marker`` (so the image's own bytes carry it)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", f"taken by {marker}")
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


class ProbeModel(ScriptedLLM):
    """Captions an image with ``caption``; otherwise answers by quoting the member's question back."""

    def __init__(self, caption: str) -> None:
        super().__init__(self._answer)
        self.caption = caption

    def _answer(self, messages: Any, tools: Any) -> Completion:
        last = messages[-1].get("content")
        if isinstance(last, list):  # a vision request
            return Completion(f"A whiteboard that says {self.caption}.", usage=Usage(10, 10))
        asked = re.findall(r"remember (\S+)", str(last))
        return Completion(f"Noted: you said {asked[-1]}." if asked else "OK.", usage=Usage(10, 10))


class Site:
    def __init__(self, app: App, http: aiohttp.ClientSession, group: dict) -> None:
        self.app, self.http = app, http
        self.group, self.address = group["number"], group["address"]  # the core's chat id; the API's path

    async def post(self, who: str, text: str = "", **extra: Any) -> dict[str, Any]:
        resp = await self.http.post(f"/api/groups/{self.address}/messages", json={"text": text, **extra},
                                    headers=await member_headers(self.http, who))  # fmt: skip
        assert resp.status == 200, await resp.text()
        await self.app.drain(60)
        return await resp.json()

    async def upload(self, who: str, name: str, data: bytes, mime: str, text: str = "") -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("text", text)
        form.add_field("file", data, filename=name, content_type=mime)
        resp = await self.http.post(f"/api/groups/{self.address}/messages", data=form,
                                    headers=await member_headers(self.http, who))  # fmt: skip
        assert resp.status == 200, await resp.text()
        await self.app.drain(60)
        return await resp.json()


def settings_for(data: Path) -> Any:
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{data}', welcome: false}}\n"
        "llm: {model: probe, vision: true, retry_base_s: 0.01, retry_max_s: 0.01}\n"
        "limits: {member_per_minute: 1000, group_per_minute: 1000}\n"
        "triggers: {answer_within_minutes: 0}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n"
    )


async def feed_her_content(site: Site, m: dict[str, str]) -> None:
    """Every input path, each with its marker; Bob around her."""
    await site.post("Alice", f"the boat key is under {m['text']} stone")
    bobs = await site.post("Bob", f"who has the boat key? {m['bob']}")
    await site.post("Alice", f"I answered you: {m['reply']} it is", reply_to=bobs["id"])
    await site.upload("Alice", f"{m['file_name']}.txt", f"Inventory: {m['file_text']} life jackets".encode(), "text/plain")
    await site.upload("Alice", "whiteboard.png", png_with_text(m["image"]), "image/png")
    await site.post("Alice", f"/remind in 2h {m['reminder']} buy rope")
    await site.post("Alice", f"/todo add {m['todo']} fix the sail")
    await site.post("Alice", f"/poll {m['poll']} where do we meet? | harbour | beach")
    theirs = await site.post("Alice", f"@Pai remember {m['quoted']}")
    asked = await site.post("Bob", "@Pai what did she ask you to remember?", reply_to=theirs["id"])
    listed = await (await site.http.get(f"/api/groups/{site.address}/messages?after={asked['id']}")).json()
    answer = [x["text"] for x in listed["messages"] if x["is_bot"]]
    assert answer and m["quoted"] in answer[0]  # the bot's answer to Bob quotes her


async def import_her_history(app: App, her_id: str, group: str, marker: str, tmp: Path) -> None:
    """An imported history with her live identity (what ``paibot memory import`` writes)."""
    src = tmp / "history.jsonl"
    src.write_text(json.dumps({"id": "1", "author": "Alice", "author_id": her_id, "sent_at": "2024-01-01T10:00:00Z",
                               "text": f"from the old chat: {marker} was the plan"}) + "\n")  # fmt: skip
    key = f"web:{group}"
    records = [r for r in read_records(src, "jsonl", ImportTarget(key, key)) if hasattr(r, "pai")]
    result = await app.services.memory.import_records(records)  # type: ignore[union-attr]
    assert result.added == 1


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> bytes:
    lines = []
    for r in caplog.records:
        lines.append(r.getMessage())
        if r.exc_text:
            lines.append(r.exc_text)
    return "\n".join(lines).encode()


async def test_forget_me_leaves_zero_bytes_of_her_anywhere(tmp_path, info_logs):
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
            before = [p for p in paths if disk.find(data, [m[p]])]
            assert len(before) == len(paths), f"not every path reached the disk: {set(paths) - set(before)}"
            done = await site.post("Alice", "/forget-me")
            listed = await (await http.get(f"/api/groups/{site.address}/messages?after={done['id']}")).json()
            reply = [x["text"] for x in listed["messages"] if x["is_bot"]]
            assert reply and reply[0].startswith("Done: I removed"), reply
            await app.services.memory.flush()  # type: ignore[union-attr]
    finally:
        await app.stop()
    hers = [m[p] for p in paths]
    unsettled = disk.find(data, hers, also=[("log", logged(info_logs))])
    disk.settle(data)
    hits = disk.find(data, [*hers, m["bob"]], also=[("log", logged(info_logs))])
    files = sum(1 for p in data.rglob("*") if p.is_file())
    print(f"\nprivacy probe: {len(paths)} input paths, {files} files and {len(info_logs.records)} log records "
          f"searched; hits of her markers before vacuum: {len(unsettled)}, after: "
          f"{len([h for h in hits if h[1] != m['bob']])}; the other member's marker found in "
          f"{sorted({h[0] for h in hits if h[1] == m['bob']})}")
    assert [h for h in hits if h[1] != m["bob"]] == []
    assert unsettled == [], unsettled  # not even free pages or the WAL: what the bot leaves, before any vacuum
    assert any(name == "memory.sqlite3" for name, mk in hits if mk == m["bob"])


async def test_paibot_memory_forget_with_the_bot_stopped_reaches_the_same_copies(tmp_path, info_logs):
    """The operator's way (``paibot memory forget --group --author``, bot stopped) forgets what /forget-me
    forgets, the web group's own store and files included."""
    import argparse

    from bot.app.forget import forget_command

    data = tmp_path / "data"
    paths = ("text", "reply", "file_name", "file_text", "image", "caption", "reminder", "todo", "poll",
             "imported", "quoted")  # fmt: skip
    m = {p: disk.marker(p.replace("_", "")) for p in (*paths, "bob")}
    settings = settings_for(data)
    app = App(settings, llm=ProbeModel(m["caption"]))
    await app.start()
    try:
        web = app.services.adapters["web"]  # type: ignore[union-attr]
        async with aiohttp.ClientSession(base_url=web.base_url) as http:
            created = await http.post("/api/groups", json={"name": "Sailing"}, headers=await member_headers(http, "Alice"))
            site = Site(app, http, await created.json())
            await feed_her_content(site, m)
            her = author_id_of(http, "Alice")
            await import_her_history(app, her, site.group, m["imported"], tmp_path)
            await app.services.memory.flush()  # type: ignore[union-attr]
    finally:
        await app.stop()
    args = argparse.Namespace(group=f"web:{site.group}", author=her, ids=[])
    assert await asyncio.to_thread(forget_command, args, settings) == 0  # a command of its own: its own loop
    hits = disk.find(data, [*(m[p] for p in paths), m["bob"]], also=[("log", logged(info_logs))])
    print(f"\npaibot memory forget: hits of her markers {[h for h in hits if h[1] != m['bob']]}")
    assert [h for h in hits if h[1] != m["bob"]] == []
    assert any(mk == m["bob"] for _, mk in hits)
