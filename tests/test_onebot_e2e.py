"""QQ end to end through the real core: a fake NapCat (OneBot v11 over a forward WebSocket) <- the onebot
plugin built from config.yaml <- App (inbox, member pipeline, memory) with a scripted model.

A group gets answers to @mentions, built from the group's unaddressed talk (named by their group cards); a
restart of paibot (and of NapCat, which renumbers its messages) loses nothing that history can return, and
a mention made while paibot was down is answered once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import parse_settings
from tests.fake_onebot import FakeOneBot
from tests.fakes import ScriptedLLM

GROUP = 445566
ALICE, BOB = 111, 222
KEY = f"onebot:{GROUP}"


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
async def world(napcat: FakeOneBot, tmp_path: Path) -> Any:
    apps: list[App] = []

    async def build(llm: ScriptedLLM) -> App:
        settings = parse_settings(
            f"bot: {{name: 派, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
            "adapters:\n"
            "  web: {enabled: false}\n"
            f"  onebot: {{enabled: true, mode: forward, url: '{napcat.ws_url}', send_interval_s: 0}}\n"
        )
        app = App(settings, llm=llm)
        await app.start()
        apps.append(app)
        return app

    yield build
    for app in apps:
        await app.stop()


async def remembered(app: App, n: int, timeout: float = 20.0) -> list[Any]:
    """Wait until the group's memory holds ``n`` records and the core handled everything received."""
    assert app.services is not None

    async def wait() -> list[Any]:
        while True:
            recs = await app.services.memory.recent(KEY, 100)  # type: ignore[union-attr]
            if len(recs) >= n:
                return recs
            await asyncio.sleep(0.05)

    recs = await asyncio.wait_for(wait(), timeout)
    await app.drain(timeout)
    return recs


async def test_a_mention_is_answered_from_the_groups_unaddressed_talk(napcat: FakeOneBot, world: Any) -> None:
    llm = ScriptedLLM(["周六早上九点，湖边步道。"])
    app = await world(llm)
    await napcat.post(GROUP, BOB, "这周六去湖边步道吧，九点集合")
    await remembered(app, 1)
    assert napcat.sent == [] and llm.calls == []  # unaddressed talk is remembered, not answered
    asked = await napcat.post(GROUP, ALICE, "我们周末去哪？", at_bot=True)
    await napcat.wait_until(lambda: len(napcat.sent) == 1)
    (reply,) = napcat.sent
    assert [s["type"] for s in reply.segments] == ["reply", "at", "text"]
    assert reply.segments[0]["data"]["id"] == str(asked.message_id)
    assert reply.segments[1]["data"]["qq"] == str(ALICE)
    assert reply.segments[2]["data"]["text"].strip() == "周六早上九点，湖边步道。"
    prompt = llm.prompts[-1]
    assert "老鲍" in prompt and "湖边步道" in prompt and "爱丽丝" in prompt


async def test_a_reply_to_the_bot_is_answered_without_a_mention(napcat: FakeOneBot, world: Any) -> None:
    llm = ScriptedLLM(["第一个回答。", "第二个回答。"])
    await world(llm)
    await napcat.post(GROUP, ALICE, "周末天气怎么样？", at_bot=True)
    await napcat.wait_until(lambda: len(napcat.sent) == 1)
    await napcat.post(GROUP, ALICE, "还有呢？", reply_to=napcat.sent[0].message_id)
    await napcat.wait_until(lambda: len(napcat.sent) == 2)
    assert napcat.sent[1].segments[-1]["data"]["text"].strip() == "第二个回答。"


async def test_a_private_message_is_answered(napcat: FakeOneBot, world: Any) -> None:
    llm = ScriptedLLM(["私聊也在。"])
    await world(llm)
    await napcat.private(ALICE, "在吗")
    await napcat.wait_until(lambda: len(napcat.sent) == 1)
    (reply,) = napcat.sent
    assert (reply.message_type, reply.peer) == ("private", ALICE)


async def test_a_restart_loses_nothing_history_can_return(napcat: FakeOneBot, world: Any) -> None:
    llm = ScriptedLLM(["在线的回答。", "补上的回答。"])
    app = await world(llm)
    await napcat.post(GROUP, BOB, "早上好")
    await napcat.post(GROUP, ALICE, "今天有雨吗", at_bot=True)
    await napcat.wait_until(lambda: len(napcat.sent) == 1)
    await remembered(app, 3)
    await app.stop()
    # While paibot is down: talk, a mention, and NapCat restarting (new message ids for everything).
    for i in range(25):
        await napcat.post(GROUP, BOB, f"停机期间的消息{i}")
    late = await napcat.post(GROUP, ALICE, "刚才说到哪了？", at_bot=True)
    napcat.restart()
    app = await world(llm)
    recs = await remembered(app, 3 + 26 + 1)
    await napcat.wait_until(lambda: len(napcat.sent) == 2)
    texts = [r.text for r in recs]
    assert all(texts.count(f"停机期间的消息{i}") == 1 for i in range(25))
    assert texts.count("早上好") == 1 and texts.count("@派 今天有雨吗") == 1
    answer = napcat.sent[1]
    assert answer.segments[-1]["data"]["text"].strip() == "补上的回答。"
    assert late.message_id in {int(s["data"]["id"]) for s in answer.segments if s["type"] == "reply"}
    await app.drain(10)
    assert len(napcat.sent) == 2  # the mention answered before the restart is not answered again
