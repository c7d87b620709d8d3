"""What the onebot adapter keeps of members is reached by /forget-me, /optout and retention, through the real
core: a fake NapCat (OneBot v11 over a forward WebSocket) <- the onebot plugin <- App.

A QQ export imported with ``paibot memory import`` names its authors by QQ number, the id the live adapter
gives them, so a member's /forget-me in the group forgets her imported history with her live messages; the
adapter's in-memory caches (group cards, quoted messages) drop her entries too."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import Settings, parse_settings
from tests.fake_onebot import FakeOneBot
from tests.fakes import ScriptedLLM
from tests.security import disk
from tests.test_memory_cli import cli

GROUP = 445566
ALICE, BOB = 10001, 10002
KEY = f"onebot:{GROUP}"


def qq_export(alice_says: str, bob_says: str) -> str:
    return (
        "消息记录（此消息记录为文本格式，不支持重新导入）\n\n"
        "================================================================\n"
        "消息对象:周末徒步群\n"
        "================================================================\n\n"
        f"2024-03-01 20:15:01 爱丽丝({ALICE})\n{alice_says}\n\n"
        f"2024-03-01 20:16:22 老鲍({BOB})\n{bob_says}\n"
    )


@pytest.fixture
async def napcat() -> Any:
    fake = FakeOneBot(nickname="派派")
    fake.group(GROUP, "周末徒步群")
    fake.member(GROUP, ALICE, "alice_qq", card="爱丽丝")
    fake.member(GROUP, BOB, "bob_qq", card="老鲍")
    await fake.serve_ws()
    yield fake
    await fake.close()


@pytest.fixture
def settings(napcat: FakeOneBot, tmp_path: Path) -> Settings:
    return parse_settings(
        f"bot: {{name: 派, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "adapters:\n"
        "  web: {enabled: false}\n"
        f"  onebot: {{enabled: true, mode: forward, url: '{napcat.ws_url}', send_interval_s: 0}}\n"
    )


async def started(settings: Settings) -> App:
    app = App(settings, llm=ScriptedLLM([]))
    await app.start()
    return app


async def answered(napcat: FakeOneBot, n: int) -> str:
    await napcat.wait_until(lambda: len(napcat.sent) >= n)
    return "".join(str(s["data"].get("text", "")) for s in napcat.sent[n - 1].segments)


async def authors(app: App) -> list[str]:
    assert app.services is not None
    return [r.author_id for r in await app.services.memory.recent(KEY, 100)]  # type: ignore[union-attr]


async def handled(app: App, n: int) -> None:
    """Wait until the core took ``n`` events in all (its inbox counts them), then until it handled them."""
    assert app.services is not None
    state = app.services.state

    async def committed() -> None:
        while sum((await state.counts()).values()) < n:
            await asyncio.sleep(0.02)  # polling a condition, bounded below

    await asyncio.wait_for(committed(), 20)
    await app.drain()


async def test_forget_me_reaches_her_imported_qq_history_and_the_adapters_caches(
    napcat: FakeOneBot, settings: Settings, tmp_path: Path
) -> None:
    old_hers, old_his = disk.marker("importedalice"), disk.marker("importedbob")
    export = tmp_path / "周末徒步群.txt"
    export.write_text(qq_export(f"上次说的 {old_hers}", f"我记得 {old_his}"), encoding="utf-8")
    assert await asyncio.to_thread(cli, settings, "import", str(export), "--group", KEY) == 0
    live = disk.marker("livealice")
    app = await started(settings)
    try:
        adapter: Any = app.services.adapters["onebot"]  # type: ignore[union-attr]
        hers = await napcat.post(GROUP, ALICE, f"周六的集合暗号是 {live}")
        await napcat.post(GROUP, BOB, "收到", reply_to=hers.message_id)  # the adapter caches the quote
        await handled(app, 2)
        assert adapter.lookups.holds(live) and adapter.lookups.holds("爱丽丝")
        assert sorted(await authors(app)) == sorted([str(ALICE), str(BOB), str(ALICE), str(BOB)])

        await napcat.post(GROUP, ALICE, "/forget-me")
        done = await answered(napcat, 1)
        assert "3" in done  # her imported message, her live one and the command itself

        assert str(ALICE) not in await authors(app)  # imported history forgotten with the live identity
        assert sorted(await authors(app)) == [str(BOB), str(BOB)]
        assert not adapter.lookups.holds(live) and not adapter.lookups.holds("爱丽丝")
    finally:
        await app.stop()
    disk.settle(settings.data_path)
    found = [p for p in settings.data_path.rglob("*") if p.is_file()
             for pat in disk.patterns(old_hers) | disk.patterns(live) if pat in p.read_bytes()]  # fmt: skip
    assert found == []


async def test_opted_out_her_qq_messages_leave_nothing_on_disk(
    napcat: FakeOneBot, settings: Settings
) -> None:
    secret = disk.marker("optedout")
    app = await started(settings)
    try:
        await napcat.post(GROUP, ALICE, "/optout")
        await answered(napcat, 1)
        await napcat.post(GROUP, ALICE, f"这句别记住 {secret}")
        await napcat.post(GROUP, BOB, "这句可以记")
        await handled(app, 3)
        assert app.services is not None
        texts = [r.text for r in await app.services.memory.recent(KEY, 100)]  # type: ignore[union-attr]
        assert "这句可以记" in texts and not any(secret in t for t in texts)
    finally:
        await app.stop()
    disk.settle(settings.data_path)
    found = [p for p in settings.data_path.rglob("*") if p.is_file()
             for pat in disk.patterns(secret) if pat in p.read_bytes()]  # fmt: skip
    assert found == []


async def test_retention_reaches_the_adapters_caches(napcat: FakeOneBot, settings: Settings) -> None:
    app = await started(settings)
    try:
        adapter: Any = app.services.adapters["onebot"]  # type: ignore[union-attr]
        said = disk.marker("old")
        hers = await napcat.post(GROUP, ALICE, f"很久以前 {said}")
        await napcat.post(GROUP, BOB, "嗯", reply_to=hers.message_id)
        await handled(app, 2)
        assert adapter.lookups.holds(said)
        assert app.services is not None
        cutoff = app.services.clock.now() + timedelta(seconds=1)
        removed = await app.skill("privacy").purge_group(KEY, cutoff)
        assert removed == 2 and await authors(app) == []
        assert not adapter.lookups.holds(said) and not adapter.lookups.holds("爱丽丝")
    finally:
        await app.stop()
