"""A relayed pai with a Discord channel: the real core and the Discord adapter (unmodified discord.py against
the fake Discord over loopback) with a fake platform beside it. Deletions propagate both ways: a member
deleting on Discord removes the copy on the other platform, and a deletion there removes the bot's copy on
Discord."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord.adapter import DiscordAdapter
from bot.app import App
from bot.config import parse_settings
from bot.ports import AdapterEnv
from tests.fake_discord import FakeDiscord
from tests.fakes import FakeMemory
from tests.pai_world import Watched

@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bridged(fake: FakeDiscord, tmp_path: Path) -> AsyncIterator[tuple[App, Watched, FakeMemory]]:
    settings = parse_settings(f"""
bot: {{name: Pai, data_dir: "{tmp_path}", welcome: false}}
llm: {{retry_base_s: 0.01, retry_max_s: 0.01}}
adapters:
  web: {{enabled: false}}
  discord: {{enabled: true, token: "{fake.token}", api_base: "{fake.api_base}", gateway_url: "{fake.gateway_url}"}}
pais: {{bridge: {{groups: ["discord:{fake.general}", "alpha:g1"], relay: true}}}}
""", env={})
    env = AdapterEnv(bot_name="Pai", data_dir=tmp_path)
    discord = DiscordAdapter(settings.adapters.discord, env, guild_ready_timeout=0.05, ready_timeout_s=20)
    alpha, memory = Watched(), FakeMemory()
    app = App(settings, adapters={"discord": discord, "alpha": alpha}, memory=memory, skills=[])
    await app.start()
    try:
        yield app, alpha, memory
    finally:
        await app.stop()


async def test_a_deletion_on_discord_deletes_the_copy_elsewhere(bridged, fake: FakeDiscord) -> None:
    app, alpha, memory = bridged
    kim = fake.add_user("kim")
    posted = await fake.user_says(kim, "soon gone")
    await alpha.until(lambda: len(alpha.sent) == 1)
    copy = alpha.sent[0]
    assert copy.chat.key == "alpha:g1" and copy.text.startswith("[DC] ") and copy.text.endswith(": soon gone")
    await app.drain()
    assert memory.texts("pai:bridge") == ["soon gone"]
    await fake.delete(fake.general, posted["id"])  # kim deletes her message on Discord
    await alpha.until(lambda: len(alpha.deleted) == 1)
    assert alpha.deleted[0].chat.key == "alpha:g1" and alpha.deleted[0].message_id == "bot-1"
    await app.drain()
    assert "soon gone" not in memory.texts("pai:bridge")  # the bot forgets it too
    assert len(alpha.sent) == 1  # nothing else was passed on (no notice, no copy of the deletion)


async def test_a_deletion_elsewhere_deletes_the_bots_copy_on_discord(bridged, fake: FakeDiscord) -> None:
    app, alpha, memory = bridged
    original = alpha.say("see you at eight", chat="g1", author="alice", name="Alice")
    await alpha.inject(original)
    await fake.until(lambda: len(fake.sent_by_bot(fake.general)) == 1)
    assert fake.sent_by_bot(fake.general)[0]["content"] == "[AL] Alice: see you at eight"
    await app.drain()
    assert memory.texts("pai:bridge") == ["see you at eight"]
    gone = dataclasses.replace(original, event_id=original.event_id + ":delete", text="", deleted=True)
    await alpha.inject(gone)  # alice deletes it where she wrote it
    await fake.until(lambda: fake.sent_by_bot(fake.general) == [])
    assert fake.requests_to("DELETE", rf"/channels/{fake.general}/messages/\d+")
    # Discord reports the deletion of the bot's own copy too: it is not passed back. A member's next message
    # comes after that report on the gateway, so once its copy is here the report was handled.
    await fake.user_says(fake.add_user("kim"), "next")
    await alpha.until(lambda: len(alpha.sent) == 1)
    assert alpha.deleted == [] and alpha.sent[0].text.endswith(": next")
    await app.drain()
    assert memory.texts("pai:bridge") == ["next"]  # the deleted message is forgotten
