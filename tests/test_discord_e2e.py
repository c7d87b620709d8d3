"""End to end: the real core (``bot.app.App``) with the Discord adapter, through the unmodified discord.py,
against the fake Discord, with a scripted model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord.adapter import DiscordAdapter
from bot.app import App
from bot.config import Settings, parse_settings
from bot.ports import AdapterEnv
from tests.fake_discord import FakeDiscord
from tests.fakes import ScriptedLLM


def settings_for(fake: FakeDiscord, data_dir: Path) -> Settings:
    return parse_settings(f"""
bot: {{name: Pai, data_dir: "{data_dir}", welcome: false}}
llm: {{model: "openai/scripted"}}
adapters:
  web: {{enabled: false}}
  discord: {{enabled: true, token: "{fake.token}", api_base: "{fake.api_base}", gateway_url: "{fake.gateway_url}"}}
""")


async def running_app(fake: FakeDiscord, data_dir: Path, llm: ScriptedLLM) -> App:
    settings = settings_for(fake, data_dir)
    adapter = DiscordAdapter(settings.adapters.discord, AdapterEnv(bot_name="Pai", data_dir=data_dir),
                             guild_ready_timeout=0.05, ready_timeout_s=20)
    app = App(settings, llm=llm, adapters={"discord": adapter})
    await app.start()
    await _wait_backfilled(adapter)
    return app


async def _wait_backfilled(adapter: DiscordAdapter) -> None:
    import asyncio

    async def until() -> None:
        while adapter._sync is None or adapter._sync.passes < 1:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(), 20)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


def mention(fake: FakeDiscord, text: str) -> str:
    return f"<@{fake.bot['id']}> {text}"


async def test_mention_is_answered_with_context_and_model_output_cannot_ping(fake: FakeDiscord, tmp_path: Path
                                                                             ) -> None:
    llm = ScriptedLLM(["Bob brings the tent. @everyone get ready! " + "More detail. " * 380])
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    app = await running_app(fake, tmp_path, llm)
    try:
        await fake.user_says(bob, "I will bring the tent to the camping trip")
        await fake.user_says(alice, mention(fake, "who brings the tent?"))
        posts = await fake.wait_bot_messages(2)
        await app.drain()
        # The plain message was remembered, not answered; the model saw it with its author.
        assert len(llm.calls) == 1
        prompt = llm.prompts[0]
        assert "I will bring the tent" in prompt and "Bob" in prompt
        # The ~5000-character answer went out as Discord replies of at most 2000 characters.
        bot_msgs = fake.sent_by_bot()
        assert len(bot_msgs) == 3 and all(len(m["content"]) <= 2000 for m in bot_msgs)
        assert bot_msgs[0]["message_reference"]["message_id"] == fake.messages[fake.general][1]["id"]
        assert posts[0]["content"].startswith("Bob brings the tent.")
        for body in [r.json for r in fake.requests_to("POST", rf"/channels/{fake.general}/messages")]:
            assert body["allowed_mentions"]["parse"] == []  # no @everyone, no roles
            assert body["allowed_mentions"]["users"] == [int(alice["id"])]
        assert all(m["mention_everyone"] is False for m in bot_msgs)
        assert "@everyone" not in bot_msgs[0]["content"]
    finally:
        await app.stop()


async def test_restart_backfills_what_was_missed_and_answers_nothing_twice(fake: FakeDiscord, tmp_path: Path
                                                                           ) -> None:
    llm = ScriptedLLM(lambda messages, tools: f"answer {len(messages)}")
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    app = await running_app(fake, tmp_path, llm)
    try:
        await fake.user_says(alice, mention(fake, "first question"))
        await fake.wait_bot_messages(1)
        await app.drain()
    finally:
        await app.stop()
    assert len(llm.calls) == 1

    # While the bot is down: a plain message, a mention, another plain one, and one in another channel.
    await fake.user_says(bob, "the meeting moved to Friday")
    await fake.user_says(alice, mention(fake, "when is the meeting?"))
    await fake.user_says(bob, "bring snacks")
    await fake.user_says(alice, mention(fake, "anyone in random?"), channel=fake.random)

    app = await running_app(fake, tmp_path, llm)
    try:
        await fake.wait_bot_messages(3)
        await app.drain()
        answered_ids = sorted(m["message_reference"]["message_id"] for m in fake.sent_by_bot())
        assert len(answered_ids) == len(set(answered_ids)) == 3
        assert len(llm.calls) == 3
        assert "the meeting moved to Friday" in llm.prompts[1] + llm.prompts[2]
        # The mention arriving live after the restart is answered once too.
        await fake.user_says(alice, mention(fake, "and now?"))
        await fake.wait_bot_messages(4)
        await app.drain()
    finally:
        await app.stop()

    # A third start finds nothing new: nothing is answered again.
    app = await running_app(fake, tmp_path, llm)
    try:
        await app.drain()
        assert len(fake.sent_by_bot()) == 4 and len(llm.calls) == 4
        await fake.user_says(bob, "we remember everything")
        await fake.user_says(alice, mention(fake, "what did bob just say?"))
        await fake.wait_bot_messages(5)
        await app.drain()
        assert "we remember everything" in llm.prompts[-1]
        assert "the meeting moved to Friday" in llm.prompts[-1]  # remembered across restarts
    finally:
        await app.stop()


async def test_app_builds_the_adapter_and_registers_its_commands_as_slash_commands(fake: FakeDiscord,
                                                                                    tmp_path: Path) -> None:
    app = App(settings_for(fake, tmp_path), llm=ScriptedLLM(["hi there"]), adapters=None)
    await app.start()
    try:
        core_commands = {info.name.lstrip("/").lower() for info in app.registry.infos()}
        assert core_commands and {c["name"] for c in fake.commands} <= core_commands
        assert "help" in {c["name"] for c in fake.commands}
        await fake.user_says(fake.add_user("zoe"), mention(fake, "hello, are you around?"))
        posts = await fake.wait_bot_messages(1)
        assert posts[0]["content"] == "hi there"
    finally:
        await app.stop()


async def test_slash_command_is_deferred_and_answered_by_the_core(fake: FakeDiscord, tmp_path: Path) -> None:
    llm = ScriptedLLM(["The group planned a trip."])
    app = await running_app(fake, tmp_path, llm)
    try:
        await fake.slash_command(fake.add_user("pia"), "help")
        posts = await fake.wait_bot_messages(1)
        await app.drain()
        assert fake.interaction_callbacks[0]["body"] == {"type": 5}  # deferred at once
        edits = fake.requests_to("PATCH", rf"/webhooks/{fake.application_id}/.+/messages/@original")
        assert edits and posts[0]["content"] == edits[0].json["content"] != ""
        assert edits[0].json["allowed_mentions"]["parse"] == []
        assert fake.requests_to("POST", rf"/channels/\d+/messages") == []  # answered through the interaction
    finally:
        await app.stop()
