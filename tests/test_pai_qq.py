"""A relayed pai with a QQ group: the real core and the OneBot adapter against the fake OneBot implementation
(forward WebSocket on loopback), with a fake platform beside it. Names and platform labels in each group's
language, and recalls both ways."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.onebot.adapter import OneBotAdapter
from adapters.onebot.config import OneBotSettings
from bot.app import App
from bot.config import parse_settings
from bot.ports import AdapterEnv
from tests.fake_onebot import FakeOneBot
from tests.fakes import FakeMemory
from tests.pai_world import Watched

GROUP, ALICE = 445566, 111
PAI = "pai:bridge"


@pytest.fixture
async def napcat() -> AsyncIterator[FakeOneBot]:
    fake = FakeOneBot(nickname="派")
    fake.group(GROUP, "周末徒步群")
    fake.member(GROUP, ALICE, "alice_qq", card="爱丽丝")
    await fake.serve_ws()
    yield fake
    await fake.close()


@pytest.fixture
async def bridged(napcat: FakeOneBot, tmp_path: Path) -> AsyncIterator[tuple[App, Watched, FakeMemory]]:
    settings = parse_settings(f"""
bot: {{name: 派, data_dir: "{tmp_path}", welcome: false}}
adapters: {{web: {{enabled: false}}}}
groups: {{"onebot:{GROUP}": {{language: 中文}}}}
pais: {{bridge: {{groups: ["onebot:{GROUP}", "web:g1"], relay: true}}}}
""", env={})
    qq = OneBotAdapter(OneBotSettings(enabled=True, mode="forward", url=napcat.ws_url, send_interval_s=0.0,
                                      group_per_minute=0), AdapterEnv("派", tmp_path))
    web, memory = Watched("web", "Web"), FakeMemory()
    app = App(settings, adapters={"onebot": qq, "web": web}, memory=memory, skills=[])
    await app.start()
    try:
        yield app, web, memory
    finally:
        await app.stop()


def texts(napcat: FakeOneBot) -> list[str]:
    return ["".join(s["data"].get("text", "") for s in m.segments) for m in napcat.sent]


async def test_a_qq_group_talks_with_another_platform_and_recalls_follow(bridged: Any, napcat: FakeOneBot
                                                                         ) -> None:
    app, web, memory = bridged
    said = await napcat.post(GROUP, ALICE, "周六去爬山吗")
    await web.until(lambda: len(web.sent) == 1)
    assert web.sent[0].text == "[QQ] 爱丽丝: 周六去爬山吗"
    carol = web.say("Count me in", chat="g1", author="carol", name="Carol")
    await web.inject(carol)
    await napcat.wait_until(lambda: len(napcat.sent) == 1)
    assert texts(napcat) == ["[网页] Carol: Count me in"]  # the QQ group reads Chinese
    await app.drain()
    assert sorted(memory.texts(PAI)) == ["Count me in", "周六去爬山吗"]  # once each (copies never)

    await web.inject(dataclasses.replace(carol, event_id=carol.event_id + ":delete", text="", deleted=True))
    copy_id = napcat.sent[0].message_id
    await napcat.wait_until(lambda: copy_id not in napcat.messages)  # the bot recalled its copy
    await napcat.recall(said.message_id)  # Alice recalls hers
    await web.until(lambda: len(web.deleted) == 1)
    assert web.deleted[0].message_id == "bot-1"
    await app.drain()
    assert memory.texts(PAI) == []
    # The recall notice of the bot's own copy came before Alice's, in the same group's lane: it was handled,
    # and not passed back.
    assert len(web.sent) == 1
