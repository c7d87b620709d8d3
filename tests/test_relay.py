"""A relayed pai through the core: two fake platforms, a fake memory and a scripted model.

Each message is written once, where its author wrote it; the others read the bot's copy, ``[AL] Alice: ...``.
"""

from __future__ import annotations

import dataclasses

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.events import Attachment, Message, ReplyRef, SentRef
from bot.ports import Capabilities
from tests.fakes import FakeAdapter, FakeMemory, ManualClock, ScriptedLLM, make_message

PAI = "pai:bridge"


class Platform(FakeAdapter):
    """A fake platform that labels itself, deletes the bot's messages and serves attachments."""

    def __init__(self, platform: str, label: str, capabilities: Capabilities | None = None) -> None:
        super().__init__(platform, capabilities or Capabilities(max_text_length=4000, edit=True, files=True))
        self.label = label
        self.deleted: list[SentRef] = []
        self.files: dict[str, bytes] = {}

    async def delete(self, ref: SentRef) -> None:
        self.deleted.append(ref)

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        return self.files[att.source][:max_bytes]

    def texts(self) -> list[str]:
        return [o.text for o in self.sent]


def settings(tmp_path, relay: bool = True, extra: str = ""):
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "llm: {retry_base_s: 0.01, retry_max_s: 0.01}\n"
        f"pais: {{bridge: {{groups: ['alpha:g1', 'beta:g2'], relay: {str(relay).lower()}}}}}\n" + extra,
        env={},
    )


@pytest.fixture
async def world(tmp_path):
    apps: list[App] = []

    async def build(llm=None, relay: bool = True, beta_caps: Capabilities | None = None, labels=("AL", "BE"),
                    extra: str = ""):
        alpha, beta = Platform("alpha", labels[0]), Platform("beta", labels[1], beta_caps)
        memory = FakeMemory()
        app = App(settings(tmp_path, relay, extra), llm=llm, adapters={"alpha": alpha, "beta": beta}, memory=memory,
                  skills=[], clock=ManualClock())
        await app.start()
        apps.append(app)
        return app, alpha, beta, memory

    yield build
    for app in apps:
        await app.stop()


def in_alpha(text: str, **kw) -> Message:
    return make_message(text, chat="g1", platform="alpha", **kw)


def in_beta(text: str, **kw) -> Message:
    return make_message(text, chat="g2", platform="beta", **kw)


async def test_a_member_message_reaches_the_other_group_with_name_and_platform(world):
    app, alpha, beta, memory = await world()
    await alpha.inject(in_alpha("hello from alpha", author="alice", name="Alice"))
    await beta.inject(in_beta("hello from beta", author="bob", name="Bob"))
    await app.drain()
    assert beta.texts() == ["[AL] Alice: hello from alpha"]
    assert alpha.texts() == ["[BE] Bob: hello from beta"]
    assert all(o.mention_user_ids == () for o in (*alpha.sent, *beta.sent))
    # each message is remembered once, in the group it was written in; copies are not remembered
    assert memory.texts(PAI) == ["hello from alpha", "hello from beta"]


async def test_each_group_reads_the_platform_labels_in_its_own_language(world):
    llm = ScriptedLLM(["嗨"])
    app, alpha, beta, _ = await world(llm, labels=("Web", "WeCom"), extra="groups: {'beta:g2': {language: 中文}}\n")
    await alpha.inject(in_alpha("hello", author="alice", name="Alice"))
    await beta.inject(in_beta("你好", author="bob", name="Bob"))
    await app.drain()
    assert beta.texts() == ["[网页] Alice: hello"]
    assert alpha.texts() == ["[WeCom] Bob: 你好"]
    # a reply to the Chinese copy reads as a reply to Alice's own words; the prompt's labels stay English
    await beta.inject(in_beta("@Pai 她说了什么?", author="bob", name="Bob", mentions_me=True,
                              reply_to=ReplyRef("bot-1", "[网页] Alice: hello", None)))
    await app.drain()
    assert 'replying to Alice: "hello"' in llm.prompts[0]
    assert "[Web] Alice: hello" in llm.prompts[0]


async def test_without_relay_a_pai_only_shares_memory(world):
    app, alpha, beta, memory = await world(relay=False)
    await alpha.inject(in_alpha("hello", author="alice"))
    await app.drain()
    assert beta.sent == [] and memory.texts(PAI) == ["hello"]


async def test_the_echo_of_a_copy_is_neither_remembered_nor_passed_on(world):
    app, alpha, beta, memory = await world()
    await alpha.inject(in_alpha("hi", author="alice", name="Alice"))
    await app.drain()
    copy_ref = "bot-1"
    await beta.inject(in_beta("[AL] Alice: hi", author="pai", from_me=True, msg_id=copy_ref))
    await app.drain()
    assert memory.texts(PAI) == ["hi"] and alpha.sent == []


async def test_a_reply_to_a_copy_becomes_a_reply_to_the_original_on_the_other_side(world):
    app, alpha, beta, memory = await world()
    original = in_alpha("who brings the cake?", author="alice", name="Alice")
    await alpha.inject(original)
    await app.drain()
    copy = beta.sent[0]
    answer = in_beta("I do", author="bob", name="Bob",
                     reply_to=ReplyRef("bot-1", copy.text, None))
    await beta.inject(answer)
    await app.drain()
    assert alpha.sent[-1].text == "[BE] Bob: I do"
    assert alpha.sent[-1].reply_to == original.id
    # memory knows Bob answered Alice's words (the original's record), not the copy
    bob = next(r for r in memory.records.values() if r.text == "I do")
    assert bob.reply_to_id == f"alpha:g1#{original.id}"


async def test_a_reply_to_a_relayed_copy_reads_as_a_reply_to_its_author(world):
    llm = ScriptedLLM(["sure"])
    app, alpha, beta, _ = await world(llm)
    await alpha.inject(in_alpha("the cake is at 5", author="alice", name="Alice"))
    await app.drain()
    await beta.inject(in_beta("@Pai is that right?", author="bob", name="Bob", mentions_me=True,
                              reply_to=ReplyRef("bot-1", "[AL] Alice: the cake is at 5", None)))
    await app.drain()
    prompt = llm.prompts[0]
    assert 'replying to Alice: "the cake is at 5"' in prompt
    assert "[AL] Alice: the cake is at 5" in prompt  # the line of the memory, labelled with its group
    assert "[BE] Bob" in prompt


async def test_the_bot_answers_once_where_asked_and_its_answer_is_passed_on(world):
    llm = ScriptedLLM(["At five."])
    app, alpha, beta, memory = await world(llm)
    question = in_alpha("@Pai when is the cake?", author="alice", name="Alice", mentions_me=True)
    await alpha.inject(question)
    await app.drain()
    assert len(llm.calls) == 1
    assert alpha.texts() == ["At five."] and alpha.sent[0].reply_to == question.id
    assert beta.texts() == ["[AL] Alice: @Pai when is the cake?", "At five."]
    assert beta.sent[1].reply_to == "bot-1"  # the answer's copy replies to the question's copy
    assert [r.text for r in memory.records.values() if r.is_bot] == ["At five."]
    # a reply to the answer's copy is a reply to the bot
    await beta.inject(in_beta("thanks, and the candles?", author="bob", name="Bob",
                              reply_to=ReplyRef("bot-2", "At five.", None)))
    await app.drain()
    assert len(llm.calls) == 2 and beta.texts()[-1] == "At five."


async def test_nothing_unasked_goes_where_the_bot_speaks_only_when_asked(world):
    """A platform like the WeCom AI bot (Capabilities.unprompted False): its members' messages are passed
    on, nothing is passed into it, and the bot still answers there when asked."""
    llm = ScriptedLLM(["At five."])
    caps = Capabilities(max_text_length=4000, edit=True, unprompted=False)
    app, alpha, beta, memory = await world(llm, beta_caps=caps)
    await alpha.inject(in_alpha("hello from alpha", author="alice", name="Alice"))
    question = in_beta("@Pai when is the cake?", author="bob", name="Bob", mentions_me=True)
    await beta.inject(question)
    await app.drain()
    assert beta.texts() == ["At five."] and beta.sent[0].reply_to == question.id
    assert alpha.texts() == ["[BE] Bob: @Pai when is the cake?", "At five."]
    assert memory.texts(PAI) == ["hello from alpha", "@Pai when is the cake?", "At five."]


async def test_commands_and_their_answers_stay_in_their_group(world):
    app, alpha, beta, _ = await world(ScriptedLLM(["x"]))
    await alpha.inject(in_alpha("/help", author="alice"))
    await app.drain()
    assert alpha.sent and beta.sent == []


async def test_edits_and_deletions_follow_the_original(world):
    app, alpha, beta, memory = await world()
    original = in_alpha("meet at 5", author="alice", name="Alice")
    await alpha.inject(original)
    await app.drain()
    edit = dataclasses.replace(original, event_id=original.event_id + ":edit", text="meet at 6", edited=True)
    await alpha.inject(edit)
    await app.drain()
    assert [(ref.message_id, text) for ref, text in beta.edits] == [("bot-1", "[AL] Alice: meet at 6")]
    gone = dataclasses.replace(original, event_id=original.event_id + ":del", text="", deleted=True)
    await alpha.inject(gone)
    await app.drain()
    assert [ref.message_id for ref in beta.deleted] == ["bot-1"]
    assert memory.texts(PAI) == []  # a deleted message is forgotten too


async def test_files_go_along_within_the_limit_or_as_a_link(world):
    small, big = Attachment("image", "cat.png", "image/png", 10, "f1"), Attachment("file", "big.zip", "x/zip", 10**9, "f2")
    app, alpha, beta, _ = await world()
    alpha.files["f1"] = b"0123456789"
    msg = dataclasses.replace(in_alpha("look", author="alice", name="Alice"), attachments=(small, big),
                              url="https://alpha.example/m/1")
    await alpha.inject(msg)
    await app.drain()
    [copy] = beta.sent
    assert [f.name for f in copy.files] == ["cat.png"] and copy.files[0].data == b"0123456789"
    assert copy.text.startswith("[AL] Alice: look")
    assert "big.zip" in copy.text and "https://alpha.example/m/1" in copy.text


async def test_a_platform_down_holds_the_copies_in_order_until_it_is_back(world):
    from bot.errors import PlatformUnavailable

    app, alpha, beta, _ = await world()
    beta.fail_sends = PlatformUnavailable("beta is down")
    for i in range(3):
        await alpha.inject(in_alpha(f"line {i}", author="alice", name="Alice"))
    await app.worker.drain()
    await beta.until_send_attempts(1)
    beta.fail_sends = None
    app.relay.wake()
    await app.drain()
    assert beta.texts() == [f"[AL] Alice: line {i}" for i in range(3)]


async def test_messages_of_other_bots_are_not_passed_on(world):
    app, alpha, beta, _ = await world()
    await alpha.inject(in_alpha("beep", author="otherbot", is_bot=True))
    await app.drain()
    assert beta.sent == []

