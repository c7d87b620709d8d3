"""Telegram end to end through the real core: fake Bot API server <- unmodified python-telegram-bot <- the
Telegram adapter <- App (inbox, member pipeline, memory) with a scripted model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.telegram.text import utf16_len
from bot.app import App
from bot.config import parse_settings
from tests.fake_telegram import FakeTelegram, make_adapter
from tests.fakes import ScriptedLLM

GROUP = -1001234567890
ALICE = FakeTelegram.user(42, "Alice", "alice")
BOB = FakeTelegram.user(43, "Bob")
MENTION = "@pai_test_bot"


def mention(text_before: str = "") -> list[dict]:
    return [{"type": "mention", "offset": utf16_len(text_before), "length": len(MENTION)}]


@pytest.fixture
async def fake():
    server = await FakeTelegram().start()
    server.chat(GROUP, title="Hikers")
    yield server
    await server.close()


@pytest.fixture
async def world(fake, tmp_path):
    """Yields a builder: ``await world(llm)`` -> running App wired to the fake Telegram."""
    apps: list[App] = []

    async def build(llm, extra: str = "") -> App:
        settings = parse_settings(
            f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
            "adapters: {web: {enabled: false}}\n" + extra
        )
        adapter = make_adapter(fake, tmp_path)
        app = App(settings, llm=llm, adapters={"telegram": adapter})
        await app.start()
        apps.append(app)
        return app

    yield build
    for app in apps:
        await app.stop()


async def settle(fake: FakeTelegram, app: App, update_id: int) -> None:
    """Wait until Telegram got the acknowledgement for ``update_id`` and the core handled everything."""
    await fake.wait_until(lambda: fake.confirmed_offset > update_id)
    await app.drain(30)


async def say(fake: FakeTelegram, user: dict, text: str, chat: int = GROUP, **extra) -> tuple[dict, int]:
    msg = await fake.message(chat, user, text, **extra)
    return msg, fake.updates[-1]["update_id"]


class ThinkingLLM(ScriptedLLM):
    """A model that takes a moment: it answers once the group sees the bot typing (at most 5 s later), so a
    test can tell that typing is shown while an answer is produced (an instant answer may come before it)."""

    def __init__(self, fake: FakeTelegram, script: list[str]) -> None:
        super().__init__(script)
        self._fake = fake

    async def _think(self) -> None:
        for _ in range(500):
            if any(a["action"] == "typing" for a in self._fake.actions):
                return
            await asyncio.sleep(0.01)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        await self._think()
        return await super().complete(*args, **kwargs)

    async def stream_complete(self, *args: Any, **kwargs: Any) -> Any:
        await self._think()
        return await super().stream_complete(*args, **kwargs)


async def test_a_mention_gets_a_quoted_reply_built_from_the_groups_context(fake, world):
    llm = ThinkingLLM(fake, ["The lake trail, Saturday at 9."])
    app = await world(llm)
    await say(fake, BOB, "How about the lake trail on Saturday?")
    asked, uid = await say(fake, ALICE, f"{MENTION} where do we go?", entities=mention())
    await settle(fake, app, uid)
    (reply,) = fake.sent
    assert reply["text"] == "The lake trail, Saturday at 9."
    assert reply["reply_to_message"]["message_id"] == asked["message_id"]
    assert reply["_params"]["link_preview_options"] == {"is_disabled": True}
    assert "Bob" in llm.prompts[-1] and "lake trail on Saturday" in llm.prompts[-1]
    assert any(a["action"] == "typing" for a in fake.actions)


async def test_a_message_without_mention_is_remembered_but_not_answered(fake, world):
    llm = ScriptedLLM(["It is closed, Bob said so."])
    app = await world(llm)
    _, uid = await say(fake, BOB, "FYI the north bridge is closed for repairs")
    await settle(fake, app, uid)
    assert fake.sent == [] and llm.calls == []
    _, uid = await say(fake, ALICE, f"{MENTION} can we cross the bridge?", entities=mention())
    await settle(fake, app, uid)
    assert fake.texts_to(GROUP) == ["It is closed, Bob said so."]
    assert "north bridge is closed" in llm.prompts[-1]


async def test_replying_to_the_bot_gets_an_answer_without_a_mention(fake, world):
    llm = ScriptedLLM(["First answer.", "Second answer."])
    app = await world(llm)
    _, uid = await say(fake, ALICE, f"{MENTION} hi", entities=mention())
    await settle(fake, app, uid)
    bot_msg = fake.sent[0]
    _, uid = await say(fake, ALICE, "and what else?", reply_to_message={k: v for k, v in bot_msg.items() if k != "_params"})
    await settle(fake, app, uid)
    assert fake.texts_to(GROUP) == ["First answer.", "Second answer."]
    assert fake.sent[1]["reply_to_message"]["text"] == "and what else?"


async def test_commands_for_us_answer_and_commands_for_other_bots_do_not(fake, world):
    llm = ScriptedLLM(["unused"])
    app = await world(llm)
    _, uid = await say(fake, ALICE, "/help@other_bot", entities=[{"type": "bot_command", "offset": 0, "length": 15}])
    await settle(fake, app, uid)
    assert fake.sent == []
    _, uid = await say(fake, ALICE, "/help@pai_test_bot", entities=[{"type": "bot_command", "offset": 0, "length": 18}])
    await settle(fake, app, uid)
    (reply,) = fake.sent
    assert "/help" in reply["text"] or "help" in reply["text"].lower()
    assert llm.calls == []  # a command needs no model
    assert "help" in [c["command"] for c in fake.commands]  # the core's commands are registered


async def test_a_private_chat_is_answered_without_mention(fake, world):
    llm = ScriptedLLM(["Hi Alice, in private."])
    app = await world(llm)
    fake.chat(42, "private", title="Alice")
    _, uid = await say(fake, ALICE, "are you free to chat?", chat=42)
    await settle(fake, app, uid)
    assert fake.texts_to(42) == ["Hi Alice, in private."]


async def test_a_photo_with_a_mention_is_remembered_as_an_image(fake, world):
    llm = ScriptedLLM(["Nice cat!"])
    app = await world(llm)
    photo = [{"file_id": "cat1", "file_unique_id": "c1", "width": 800, "height": 600, "file_size": 12}]
    fake.add_file("cat1", b"\xff\xd8 cat jpeg", "photos/cat1.jpg")
    _, uid = await say(fake, ALICE, "", photo=photo, caption=f"{MENTION} look at our cat",
                       caption_entities=mention())
    await settle(fake, app, uid)
    assert fake.texts_to(GROUP) == ["Nice cat!"]
    assert app.services is not None
    recent = await app.services.memory.recent(f"telegram:{GROUP}", 10)
    assert any("[image: photo_c1.jpg]" in r.text and "look at our cat" in r.text for r in recent)


async def test_a_10000_character_answer_arrives_split_and_complete(fake, world):
    long_answer = "\n\n".join(f"Section {i}. " + ("lorem ipsum dolor sit amet " * 37).strip() for i in range(10))
    assert len(long_answer) > 10_000
    app = await world(ScriptedLLM([long_answer]))
    asked, uid = await say(fake, ALICE, f"{MENTION} tell me everything", entities=mention())
    await settle(fake, app, uid)
    parts = fake.texts_to(GROUP)
    assert len(parts) == 3 and all(utf16_len(p) <= 4096 for p in parts)
    assert "\n\n".join(parts) == long_answer
    assert fake.sent[0]["reply_to_message"]["message_id"] == asked["message_id"]
    assert all("reply_to_message" not in m for m in fake.sent[1:])


async def test_a_429_is_waited_out_and_the_reply_sent_once(fake, world):
    app = await world(ScriptedLLM(["after the flood"]))
    fake.flood("sendMessage", retry_after=1)
    _, uid = await say(fake, ALICE, f"{MENTION} hi", entities=mention())
    await settle(fake, app, uid)
    assert fake.texts_to(GROUP) == ["after the flood"]
    assert [m for m, _ in fake.calls].count("sendMessage") == 2


async def test_markdown_v2_hostile_model_output_is_delivered_exactly(fake, world):
    hostile = "**Plan** _v1.2_: [x](y) `a|b` #1 -> {ok}! ~maybe~ > quote \\o/ * _ ` [ ("
    app = await world(ScriptedLLM([hostile]))
    _, uid = await say(fake, ALICE, f"{MENTION} plan?", entities=mention())
    await settle(fake, app, uid)
    assert fake.texts_to(GROUP) == [hostile]
