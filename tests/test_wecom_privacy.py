"""What the wecom adapter keeps of members is reached by /forget-me, /optout and retention, through the real
core: a fake WeCom (signed, encrypted callbacks over loopback) -> the wecom plugin -> App.

The adapter holds, in memory and for an hour at most, the answers WeCom keeps refreshing. An answer to a
forgotten member's message, or one quoting her, is emptied: the next refresh shows nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import parse_settings
from tests.fake_wecom import Conversation, FakeWeCom
from tests.fakes import ScriptedLLM
from tests.security import disk

GROUP = "wrkSFfCgPRIV"
KEY = f"wecom:{GROUP}"


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    fake = FakeWeCom()
    apps: list[App] = []

    async def build(answers: list[str]) -> App:
        settings = parse_settings(
            f"bot: {{name: 派, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
            "adapters:\n"
            "  web: {enabled: false}\n"
            f"  wecom: {{enabled: true, token: {fake.token}, encoding_aes_key: {fake.aes}, port: 0}}\n"
        )
        app = App(settings, llm=ScriptedLLM(answers))
        await app.start()
        apps.append(app)
        await fake.start(app.services.adapters["wecom"].where)  # type: ignore[union-attr]
        return app

    yield fake, build
    for app in apps:
        await app.stop()
    await fake.close()


async def ask(fake: FakeWeCom, text: str, user: str) -> Conversation:
    conv = await fake.send(fake.message(f"@派 {text}", chat=GROUP, user=user))
    await asyncio.wait_for(conv.done.wait(), 30)
    return conv


async def test_forget_me_empties_the_answers_wecom_still_refreshes(world: Any) -> None:
    fake, build = world
    secret = disk.marker("wecomsecret")
    answer = f"好的，我记下了：集合暗号是 {secret}。"
    app = await build([answer, "另一个回答。"])
    hers = await ask(fake, f"记一下，集合暗号是 {secret}", "zhaoliu")
    his = await ask(fake, "明天几点开会？", "qianqi")
    assert hers.shown[-1] == answer and await fake.refresh_once(hers) == answer

    done = await ask(fake, "/forget-me", "zhaoliu")
    assert "/optout" in done.shown[-1]
    assert await fake.refresh_once(hers) == ""  # the answer to her message is gone from the adapter
    assert await fake.refresh_once(his) == "另一个回答。"  # others' answers stay
    assert app.services is not None
    texts = [r.text for r in await app.services.memory.recent(KEY, 100)]  # type: ignore[union-attr]
    assert not any(secret in t for t in texts)


async def test_retention_empties_old_answers(world: Any) -> None:
    fake, build = world
    app = await build(["这是一个旧回答。"])
    conv = await ask(fake, "今天的安排是什么？", "zhaoliu")
    assert await fake.refresh_once(conv) == "这是一个旧回答。"
    assert app.services is not None
    await app.skill("privacy").purge_group(KEY, app.services.clock.now() + timedelta(seconds=1))
    assert await fake.refresh_once(conv) == ""


async def test_opted_out_her_wecom_questions_are_answered_and_leave_nothing_on_disk(world: Any) -> None:
    fake, build = world
    secret = disk.marker("wecomoptout")
    app = await build(["我不会记住这句话，但可以回答你。"])
    await ask(fake, "/optout", "zhaoliu")
    conv = await ask(fake, f"这句别记住 {secret}", "zhaoliu")
    assert conv.shown[-1] == "我不会记住这句话，但可以回答你。"
    await app.stop()
    data = app.settings.data_path
    disk.settle(data)
    found = [p for p in data.rglob("*") if p.is_file()
             for pat in disk.patterns(secret) if pat in p.read_bytes()]  # fmt: skip
    assert found == []
