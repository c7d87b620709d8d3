"""The member pipeline end to end through the core, with a fake adapter, a fake memory and a scripted LLM."""

from __future__ import annotations

import asyncio

import pytest

from bot.app import App
from bot.brain import APOLOGY
from bot.config import parse_settings
from bot.errors import LLMFatal, LLMRateLimited
from bot.events import ReplyRef
from tests.fakes import FakeAdapter, FakeMemory, ManualClock, ScriptedLLM, make_message


def make_settings(tmp_path, extra: str = ""):
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "llm: {retry_base_s: 0.01, retry_max_s: 0.01}\n" + extra
    )


@pytest.fixture
async def world(tmp_path):
    """A running app with a fake adapter; yields (app, adapter, memory, llm)."""
    apps = []

    async def build(llm=None, extra: str = "", memory=None):
        adapter = FakeAdapter()
        mem = memory or FakeMemory()
        app = App(make_settings(tmp_path, extra), llm=llm, adapters={"fake": adapter}, memory=mem, skills=[],
                  clock=ManualClock())
        await app.start()
        apps.append(app)
        return app, adapter, mem

    yield build
    for app in apps:
        await app.stop()


async def test_mention_gets_a_quoted_reply_built_from_the_groups_context(world):
    llm = ScriptedLLM(["Bob suggested Luigi's on Friday."])
    app, adapter, _ = await world(llm)
    await adapter.inject(make_message("let's eat at Luigi's on Friday", author="bob", name="Bob"))
    await adapter.inject(make_message("sounds good", author="carol", name="Carol"))
    trigger = make_message("@Pai where are we eating?", author="alice", name="Alice")
    await adapter.inject(trigger)
    await app.drain()
    assert [o.text for o in adapter.sent] == ["Bob suggested Luigi's on Friday."]
    assert adapter.sent[0].reply_to == trigger.id
    prompt = llm.prompts[0]
    assert "Bob: let's eat at Luigi's on Friday" in prompt
    assert "Carol: sounds good" in prompt
    assert "Alice is asking you: where are we eating?" in prompt


async def test_unaddressed_messages_are_remembered_but_not_answered(world):
    llm = ScriptedLLM(["never"])
    app, adapter, mem = await world(llm)
    await adapter.inject(make_message("just chatting"))
    await app.drain()
    assert adapter.sent == [] and llm.calls == []
    assert mem.texts("fake:g1") == ["just chatting"]


async def test_a_replayed_event_is_answered_once(world):
    app, adapter, _ = await world(ScriptedLLM(["hi!"]))
    msg = make_message("@Pai hello")
    assert await adapter.inject(msg) == 1
    assert await adapter.inject(msg) == 0
    await app.drain()
    assert len(adapter.sent) == 1


async def test_reply_to_the_bots_message_triggers(world):
    llm = ScriptedLLM(["first", "second"])
    app, adapter, _ = await world(llm)
    await adapter.inject(make_message("@Pai hi"))
    await app.drain()
    await adapter.inject(make_message("tell me more", reply_to=ReplyRef("bot-1", "first")))
    await adapter.inject(make_message("unrelated", reply_to=ReplyRef("m999", "someone else")))
    await app.drain()
    assert [o.text for o in adapter.sent] == ["first", "second"]


async def test_provider_failure_gives_one_fixed_apology_and_no_provider_text(world):
    llm = ScriptedLLM([LLMFatal("invalid api key sk-secret-123 for org X")])
    app, adapter, _ = await world(llm)
    await adapter.inject(make_message("@Pai hello"))
    await app.drain()
    assert [o.text for o in adapter.sent] == [APOLOGY]
    assert "sk-secret" not in adapter.sent[0].text


async def test_rate_limited_provider_is_retried_then_answers(world):
    llm = ScriptedLLM([LLMRateLimited("slow down", retry_after=0.01), "answer"])
    app, adapter, _ = await world(llm)
    await adapter.inject(make_message("@Pai hello"))
    await app.drain()
    assert [o.text for o in adapter.sent] == ["answer"]


async def test_no_model_answers_from_memory_with_authors_and_a_hint(world):
    app, adapter, _ = await world(None)
    await adapter.inject(make_message("the venue is the Blue Hall", author="bob", name="Bob"))
    await adapter.inject(make_message("@Pai what was the venue?"))
    await app.drain()
    (reply,) = adapter.sent
    assert "Here is what this group said about it" in reply.text
    assert "Bob" in reply.text and "Blue Hall" in reply.text
    assert "llm.model" in reply.text


async def test_commands_work_without_a_model(world):
    app, adapter, _ = await world(None)
    await adapter.inject(make_message("/help"))
    await app.drain()
    assert "/search" in adapter.sent[0].text


async def test_groups_are_isolated(world):
    llm = ScriptedLLM(["ok", "ok"])
    app, adapter, _ = await world(llm)
    await adapter.inject(make_message("secret plan: launch on Monday", chat="A"))
    await adapter.inject(make_message("@Pai what is the secret plan?", chat="B"))
    await app.drain()
    assert "launch on Monday" not in llm.prompts[0]


async def test_member_rate_limit_refuses_before_any_llm_call(world):
    llm = ScriptedLLM(["ok"])
    app, adapter, _ = await world(llm, extra="limits: {member_per_minute: 2}")
    for i in range(5):
        await adapter.inject(make_message(f"@Pai question {i}"))
    await app.drain()
    assert len(llm.calls) == 2
    refusals = [o for o in adapter.sent if "fast" in o.text]
    assert len(refusals) == 1  # told once, not on every refused message


async def test_oversized_input_is_refused_before_the_llm(world):
    llm = ScriptedLLM(["ok"])
    app, adapter, _ = await world(llm, extra="limits: {max_input_chars: 50}")
    await adapter.inject(make_message("@Pai " + "x" * 100))
    await app.drain()
    assert llm.calls == [] and "too long" in adapter.sent[0].text


async def test_a_handler_failure_is_retried_then_dead_lettered_without_blocking_the_chat(world, tmp_path):
    class ExplodingMemory(FakeMemory):
        async def record(self, rec):
            if "boom" in rec.text:
                raise RuntimeError("disk on fire")
            await super().record(rec)

    app, adapter, mem = await world(ScriptedLLM(["ok"]), memory=ExplodingMemory())
    await adapter.inject(make_message("boom"))
    await adapter.inject(make_message("after the bomb"))
    await app.drain(timeout=20)
    assert mem.texts("fake:g1") == ["after the bomb"]
    dead = await app.services.state.dead_letters()
    assert len(dead) == 1 and dead[0][2] == 3 and "disk on fire" in dead[0][1]


async def test_send_failure_is_retried_and_answered_once(world):
    app, adapter, _ = await world(ScriptedLLM(["ok"]))
    adapter.fail_sends = ConnectionError("platform down")
    await adapter.inject(make_message("@Pai hi"))
    await adapter.until_send_attempts(1)
    adapter.fail_sends = None
    await app.drain(timeout=20)
    assert [o.text for o in adapter.sent] == ["ok"]


async def test_welcome_note_is_added_once_per_group(tmp_path):
    adapter = FakeAdapter()
    settings = parse_settings(f"bot: {{name: Pai, data_dir: '{tmp_path}'}}")
    app = App(settings, adapters={"fake": adapter}, memory=FakeMemory(), skills=[], clock=ManualClock())
    await app.start()
    try:
        await adapter.inject(make_message("/help"))
        await adapter.inject(make_message("/help"))
        await app.drain()
    finally:
        await app.stop()
    assert "/forget-me" in adapter.sent[0].text
    assert "/forget-me removes" not in adapter.sent[1].text


async def test_second_instance_on_the_same_data_dir_is_refused(tmp_path):
    from bot.errors import DataDirLocked

    settings = make_settings(tmp_path)
    first = App(settings, adapters={}, memory=FakeMemory(), skills=[])
    await first.start()
    try:
        with pytest.raises(DataDirLocked):
            await App(settings, adapters={}, memory=FakeMemory(), skills=[]).start()
    finally:
        await first.stop()


async def test_bot_echo_is_recorded_not_answered(world):
    llm = ScriptedLLM(["ok"])
    app, adapter, mem = await world(llm)
    await adapter.inject(make_message("@Pai I am the bot", from_me=True, author="me"))
    await app.drain()
    assert adapter.sent == [] and llm.calls == []


def test_manual_clock_is_usable():
    assert ManualClock().now().tzinfo is not None


async def test_no_model_quotes_only_relevant_human_messages_from_the_real_memory(tmp_path):
    adapter = FakeAdapter()
    app = App(make_settings(tmp_path), adapters={"fake": adapter}, skills=[], clock=ManualClock())
    await app.start()
    try:
        await adapter.inject(make_message("the venue is the Blue Hall", author="bob", name="Bob"))
        await adapter.inject(make_message("我们周五去吃火锅", author="li", name="李"))
        await adapter.inject(make_message("@Pai what was the venue?"))
        await app.drain()
        await adapter.inject(make_message("@Pai 周五吃什么？"))
        await app.drain()
    finally:
        await app.stop()
    english, chinese = (o.text for o in adapter.sent)
    assert "Bob" in english and "Blue Hall" in english and "火锅" not in english
    assert "火锅" in chinese and "Blue Hall" not in chinese  # not even inside the bot's own earlier answer


async def test_daily_token_budget_per_group_holds_and_other_groups_are_unaffected(world):
    from bot.ports import Completion, Usage

    llm = ScriptedLLM([Completion("big answer", usage=Usage(900, 200))] * 5)
    app, adapter, _ = await world(llm, extra="limits: {daily_tokens_per_group: 1000}")
    await adapter.inject(make_message("@Pai one", chat="A"))
    await app.drain()
    await adapter.inject(make_message("@Pai two", chat="A", author="bob"))
    await adapter.inject(make_message("@Pai three", chat="B"))
    await app.drain()
    texts = {(o.chat.chat_id, o.text) for o in adapter.sent}
    assert ("A", "big answer") in texts and ("B", "big answer") in texts
    assert any(c == "A" and "budget" in t for c, t in texts)
    assert len(llm.calls) == 2
    assert app.services.state.tokens_today("fake:A") == 1100


async def test_a_mention_caught_up_hours_later_is_remembered_but_not_answered(world):
    from datetime import datetime, timezone

    llm = ScriptedLLM(["late"])
    app, adapter, mem = await world(llm)
    old = make_message("@Pai still there?", sent_at=datetime(2026, 10, 31, 6, 0, tzinfo=timezone.utc))
    await adapter.inject(old)
    await app.drain()
    assert adapter.sent == [] and llm.calls == []
    assert "@Pai still there?" in mem.texts("fake:g1")


async def _crash_mid_send(tmp_path, adapter):
    """Run one mention until the adapter is asked to send, then 'crash' (stop without finishing)."""
    from bot.state import StateDB

    settings = make_settings(tmp_path)
    app = App(settings, llm=ScriptedLLM(["the answer"]), adapters={"fake": adapter}, memory=FakeMemory(),
              skills=[], clock=ManualClock())
    await app.start()
    adapter.fail_sends = asyncio.CancelledError()  # the process dies while the platform call is in flight
    msg = make_message("@Pai question")
    await adapter.inject(msg)
    await adapter.until_send_attempts(1)
    await app.stop(grace_s=0.1)
    # what a SIGKILL at that moment leaves behind: the claim, not yet released
    state = StateDB(tmp_path / "paibot.db")
    await state.claim_reply(msg.event_id, '{"text": "the answer", "reply_to": "%s", "thread": null, '
                            '"mention_user_ids": ["alice"], "resendable": true}' % msg.id)
    state.close()
    adapter.fail_sends = None
    return settings


async def test_a_reply_interrupted_by_a_crash_is_resent_once_where_sends_are_idempotent(tmp_path):
    from bot.ports import Capabilities

    adapter = FakeAdapter(capabilities=Capabilities(idempotent_sends=True))
    settings = await _crash_mid_send(tmp_path, adapter)
    llm = ScriptedLLM(["a different answer"])
    app = App(settings, llm=llm, adapters={"fake": adapter}, memory=FakeMemory(), skills=[], clock=ManualClock())
    await app.start()
    try:
        await app.drain()
    finally:
        await app.stop()
    assert [o.text for o in adapter.sent] == ["the answer"] and llm.calls == []


async def test_an_interrupted_reply_is_not_resent_where_the_platform_could_duplicate_it(tmp_path):
    adapter = FakeAdapter()
    settings = await _crash_mid_send(tmp_path, adapter)
    app = App(settings, llm=ScriptedLLM(["again"]), adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=ManualClock())
    await app.start()
    try:
        await app.drain()
    finally:
        await app.stop()
    assert adapter.sent == []


async def test_observers_see_whether_an_answer_is_allowed_and_ingest_regardless(tmp_path):
    from bot.commands import Observation

    seen: list[tuple[str, bool]] = []

    class Watcher:
        def commands(self):
            return []

        def tools(self):
            return []

        def observers(self):
            async def watch(obs: Observation):
                seen.append((obs.message.text, obs.may_answer))
                return None

            return [watch]

    adapter = FakeAdapter()
    settings = make_settings(tmp_path, "limits: {member_per_minute: 1}")
    app = App(settings, llm=ScriptedLLM(["ok"]), adapters={"fake": adapter}, memory=FakeMemory(),
              skills=[Watcher()], clock=ManualClock())
    await app.start()
    try:
        for text in ("@Pai one", "@Pai two", "chatter"):
            await adapter.inject(make_message(text))
        await app.drain()
    finally:
        await app.stop()
    assert seen == [("@Pai one", True), ("@Pai two", False), ("chatter", True)]


async def test_an_observer_can_consume_a_message_silently(tmp_path):
    from bot.commands import HANDLED

    class Swallow:
        def commands(self):
            return []

        def tools(self):
            return []

        def observers(self):
            async def swallow(obs):
                return HANDLED if "vote" in obs.message.text else None

            return [swallow]

    adapter = FakeAdapter()
    llm = ScriptedLLM(["answer"])
    app = App(make_settings(tmp_path), llm=llm, adapters={"fake": adapter}, memory=FakeMemory(),
              skills=[Swallow()], clock=ManualClock())
    await app.start()
    try:
        await adapter.inject(make_message("@Pai vote 2"))
        await adapter.inject(make_message("@Pai hello"))
        await app.drain()
    finally:
        await app.stop()
    assert [o.text for o in adapter.sent] == ["answer"] and len(llm.calls) == 1


async def test_a_platform_outage_keeps_the_reply_and_delivers_it_once_when_it_heals(tmp_path):
    from bot.errors import PlatformUnavailable

    adapter = FakeAdapter()
    llm = ScriptedLLM(["the answer", "a second, different answer"])
    app = App(make_settings(tmp_path), llm=llm, adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=ManualClock())
    await app.start()
    app.worker._outage_base_s = app.worker._outage_cap_s = 0.05  # keep the test quick
    try:
        adapter.fail_sends = PlatformUnavailable("connection refused")
        await adapter.inject(make_message("@Pai question"))
        await adapter.inject(make_message("@Pai question", chat="other"))
        await adapter.until_send_attempts(6)  # several tries (of both replies) during the outage
        assert adapter.sent == []
        adapter.fail_sends = None
        await app.drain(timeout=20)
        assert sorted(o.text for o in adapter.sent) == ["a second, different answer", "the answer"]
        assert len(llm.calls) == 2  # one model call per question, however long the outage
        assert await app.services.state.dead_letters() == []
    finally:
        await app.stop()


async def test_a_reply_waiting_out_an_outage_survives_a_restart_without_a_second_model_call(tmp_path):
    from bot.errors import PlatformUnavailable

    adapter = FakeAdapter()
    llm = ScriptedLLM(["kept answer"])
    app = App(make_settings(tmp_path), llm=llm, adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=ManualClock())
    await app.start()
    adapter.fail_sends = PlatformUnavailable("down")
    await adapter.inject(make_message("@Pai question"))
    await adapter.until_send_attempts(1)
    await app.stop(grace_s=0.1)
    adapter.fail_sends = None
    llm2 = ScriptedLLM(["should not be asked"])
    app2 = App(make_settings(tmp_path), llm=llm2, adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
               clock=ManualClock())
    await app2.start()
    try:
        await app2.drain(timeout=20)
    finally:
        await app2.stop()
    assert [o.text for o in adapter.sent] == ["kept answer"] and llm2.calls == []


async def test_an_uncertain_send_is_not_repeated_where_the_platform_could_duplicate_it(world):
    from bot.errors import DeliveryUncertain

    llm = ScriptedLLM(["maybe delivered"])
    app, adapter, _ = await world(llm)
    adapter.fail_sends = DeliveryUncertain("timed out after sending")
    await adapter.inject(make_message("@Pai question"))
    await app.drain(timeout=20)
    adapter.fail_sends = None
    await app.drain(timeout=5)
    assert adapter.sent == [] and len(llm.calls) == 1
    assert await app.services.state.dead_letters() == []


def test_a_daily_budget_of_zero_means_no_budget(tmp_path):
    from bot.services import Services
    from bot.state import StateDB

    state = StateDB(tmp_path / "s.db")
    try:
        unlimited = Services(make_settings(tmp_path, "limits: {daily_tokens_per_group: 0}"), FakeMemory(), state,
                             ManualClock())
        capped = Services(make_settings(tmp_path, "limits: {daily_tokens_per_group: 10}"), FakeMemory(), state,
                          ManualClock())
        from bot.ports import Usage

        state.add_usage("fake:g1", "m", Usage(50, 50))
        assert not unlimited.budget_spent("fake:g1") and capped.budget_spent("fake:g1")
    finally:
        state.close()


class JournalAdapter(FakeAdapter):
    """A platform without idempotent sends whose adapter keeps a journal of attempted sends."""

    def __init__(self, attempted: bool) -> None:
        super().__init__()
        self.attempted = attempted

    async def delivery_attempted(self, out):
        return self.attempted


@pytest.mark.parametrize(("attempted", "resent"), [(False, ["the answer"]), (True, [])])
async def test_an_interrupted_reply_is_resent_only_when_the_adapters_journal_shows_it_never_left(
    tmp_path, attempted, resent
):
    adapter = JournalAdapter(attempted=attempted)
    settings = await _crash_mid_send(tmp_path, adapter)
    app = App(settings, llm=ScriptedLLM(["again"]), adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=ManualClock())
    await app.start()
    try:
        await app.drain()
    finally:
        await app.stop()
    assert [o.text for o in adapter.sent] == resent
