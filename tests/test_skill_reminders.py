"""Reminders through the core: the command form without a model, the tool with a scripted model, durable
exactly-once firing across restarts, caps, and who may cancel."""

from __future__ import annotations

from datetime import datetime, timezone

from bot.events import Outgoing
from tests.fakes import ScriptedLLM, make_message, tool_call
from tests.skill_world import ADMIN, say, skill, world_fixture  # noqa: F401  (the "world" fixture)

# 2026-11-01 12:00 UTC is Sunday 20:00 in Shanghai (the test groups' time zone)


async def test_remind_in_two_hours_fires_once_in_the_same_group_mentioning_the_owner(world):
    app, adapter, _ = await world.start()
    (answer,) = await say(app, adapter, make_message("/remind in 2h stand up", author="ann", name="Ann"))
    assert "reminder #1" in answer and "stand up" in answer and "today 22:00" in answer
    rem = skill(app, "reminders")
    world.clock.advance(3600)
    assert await rem.loop.tick() == 0
    world.clock.advance(3600)
    assert await rem.loop.tick() == 1
    assert await rem.loop.tick() == 0
    fired = adapter.sent[-1]
    assert fired.chat.key == "fake:g1" and fired.mention_user_ids == ("ann",)
    assert fired.text == "⏰ Reminder for Ann: stand up"  # on time: not marked late


async def test_chinese_daily_reminder_repeats_without_a_burst_after_a_long_outage(world):
    app, adapter, _ = await world.start()
    (answer,) = await say(app, adapter, make_message("/remind 每天 9点 打卡", author="li", name="李"))
    assert "每天 09:00" in answer and "打卡" in answer and "明天 09:00" in answer  # a Chinese group reads Chinese
    await world.stop(app)
    world.clock.advance(3 * 86400)  # three mornings missed while the bot was down
    app, adapter, _ = await world.start()
    rem = skill(app, "reminders")
    assert await rem.loop.tick() == 1  # once, late; not three times
    await adapter.wait_sent(1)
    assert len(adapter.sent) == 1 and adapter.sent[0].text.endswith("（迟到了：原定 09:00）")  # the latest missed morning
    assert await rem.loop.tick() == 0
    listing = await say(app, adapter, make_message("/reminders"))
    assert "2026-11-05 09:00" in listing[0] or "明天 09:00" in listing[0]


async def test_a_due_reminder_fires_exactly_once_across_restarts_and_says_it_is_late(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/remind in 1h submit the report"))
    await world.stop(app)
    world.clock.advance(2 * 3600)  # due at 21:00 local; the bot comes back at 22:00
    app2, adapter2, _ = await world.start()
    assert await skill(app2, "reminders").loop.tick() == 1
    assert await skill(app2, "reminders").loop.tick() == 0
    assert len(adapter2.sent) == 1
    assert adapter2.sent[0].text.startswith("⏰ Reminder for Alice: submit the report (late: was due 21:00)")
    await world.stop(app2)
    app3, adapter3, _ = await world.start()
    assert await skill(app3, "reminders").loop.tick() == 0
    assert adapter3.sent == []


async def test_a_claimed_but_unconfirmed_firing_is_never_sent_again(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/remind in 1h x"))
    rem = skill(app, "reminders")
    world.clock.advance(7200)
    (due,) = await rem.store.candidates(world.clock.now())
    assert await rem.store.claim(due, world.clock.now(), rem.s.tz_for("fake:g1")) is not None  # "crash" here
    await world.stop(app)
    app2, adapter2, _ = await world.start()
    assert await skill(app2, "reminders").loop.tick() == 0
    assert adapter2.sent == []


async def test_an_interrupted_firing_is_resent_once_where_the_platform_deduplicates_sends(world):
    from bot.ports import Capabilities
    from tests.fakes import FakeAdapter

    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/remind in 1h x"))
    rem = skill(app, "reminders")
    world.clock.advance(7200)
    (due,) = await rem.store.candidates(world.clock.now())
    assert await rem.store.claim(due, world.clock.now(), rem.s.tz_for("fake:g1")) is not None  # "crash" here
    await world.stop(app)
    deduplicating = FakeAdapter(capabilities=Capabilities(idempotent_sends=True))
    app2, adapter2, _ = await world.start(adapter=deduplicating)
    assert await skill(app2, "reminders").loop.tick() == 1
    assert await skill(app2, "reminders").loop.tick() == 0
    (fired,) = adapter2.sent
    assert fired.idempotency_key.startswith("reminder:") and "x" in fired.text
    await world.stop(app2)
    app3, adapter3, _ = await world.start(adapter=FakeAdapter(capabilities=Capabilities(idempotent_sends=True)))
    assert await skill(app3, "reminders").loop.tick() == 0 and adapter3.sent == []


async def test_a_failed_send_is_retried_later(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/remind in 10 min tea"))
    rem = skill(app, "reminders")
    world.clock.advance(600)
    adapter.fail_sends = ConnectionError("platform down")
    assert await rem.loop.tick() == 0
    adapter.fail_sends = None
    assert await rem.loop.tick() == 0  # the retry waits for its backoff
    world.clock.advance(60)
    assert await rem.loop.tick() == 1
    assert [o.text for o in adapter.sent[-1:]] == ["⏰ Reminder for Alice: tea"]


async def test_reminders_wait_for_their_platform_to_connect(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/remind in 10 min tea"))
    rem = skill(app, "reminders")
    world.clock.advance(900)
    platforms = app.services.adapters
    saved = platforms.pop("fake")
    assert await rem.loop.tick() == 0
    platforms["fake"] = saved
    assert await rem.loop.tick() == 1


async def test_list_and_cancel_need_the_owner_or_an_admin(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/remind tomorrow 9:00 call the venue", author="ann", name="Ann"))
    await say(app, adapter, make_message("/remind friday 3pm submit the report", author="bob", name="Bob"))
    (listing,) = await say(app, adapter, make_message("/reminders"))
    assert "#1 tomorrow 09:00: call the venue — set by Ann" in listing
    assert "#2 Fri 2026-11-06 15:00: submit the report — set by Bob" in listing
    (no,) = await say(app, adapter, make_message("/reminders cancel 1", author="bob"))
    assert "Only Ann" in no
    (ok,) = await say(app, adapter, make_message("/unremind 1", author="ann"))
    assert "Cancelled reminder #1" in ok
    (ok2,) = await say(app, adapter, make_message("/reminders cancel 2", author=ADMIN))
    assert "Cancelled reminder #2" in ok2
    (empty,) = await say(app, adapter, make_message("/reminders"))
    assert "No reminders" in empty
    world.clock.advance(10 * 86400)
    assert await skill(app, "reminders").loop.tick() == 0


async def test_cap_per_group(world):
    app, adapter, _ = await world.start(extra="limits: {reminders_per_group: 2, member_per_minute: 100}")
    for i in range(2):
        (ok,) = await say(app, adapter, make_message(f"/remind in {i + 1}h thing {i}"))
        assert "reminder #" in ok
    (refused,) = await say(app, adapter, make_message("/remind in 3h one too many"))
    assert "can't add another reminder" in refused and "limit of 2" in refused
    (other,) = await say(app, adapter, make_message("/remind in 3h elsewhere", chat="g2"))
    assert "reminder #1" in other  # the cap is per group


async def test_bad_input_gets_usage_not_a_reminder(world):
    app, adapter, _ = await world.start()
    (a,) = await say(app, adapter, make_message("/remind sometime maybe"))
    (b,) = await say(app, adapter, make_message("/remind in 2h"))
    (c,) = await say(app, adapter, make_message("/remind 2020-01-01 09:00 the past"))
    assert "couldn't tell when" in a and "What should I remind" in b and "already passed" in c
    (listing,) = await say(app, adapter, make_message("/reminders"))
    assert "No reminders" in listing


async def test_the_model_sets_a_reminder_in_the_callers_group_whatever_the_arguments_say(world):
    llm = ScriptedLLM(
        [
            tool_call(
                "set_reminder",
                '{"when": "2026-11-06T15:00", "text": "submit the report", '
                '"group": "fake:other", "chat_id": "other"}',
            ),
            "Done: Friday 15:00.",
        ]
    )
    app, adapter, _ = await world.start(llm)
    replies = await say(
        app, adapter, make_message("@Pai remind us Friday 3pm to submit the report", chat="g7")
    )
    assert replies == ["Done: Friday 15:00."]
    tool_result = llm.calls[1]["messages"][-1]["content"]
    assert "reminder #1" in tool_result and "Fri 2026-11-06 15:00" in tool_result
    rem = skill(app, "reminders")
    assert [r.text for r in await rem.store.active("fake:g7")] == ["submit the report"]
    assert await rem.store.active("fake:other") == []
    world.clock.advance(5 * 86400 + 3600)
    assert await rem.loop.tick() == 1
    assert adapter.sent[-1].chat.key == "fake:g7"


async def test_the_model_sets_a_chinese_daily_reminder_from_natural_text(world):
    llm = ScriptedLLM([tool_call("set_reminder", '{"when": "每天早上9点", "text": "打卡"}'), "好的"])
    app, adapter, _ = await world.start(llm)
    await say(app, adapter, make_message("@Pai 每天早上9点提醒我打卡", author="li", name="李"))
    (r,) = await skill(app, "reminders").store.active("fake:g1")
    assert r.rule == "daily 09:00" and r.text == "打卡" and r.owner_id == "li"


async def test_without_a_model_a_mention_asking_for_a_reminder_is_parsed(world):
    app, adapter, _ = await world.start()
    (answer,) = await say(app, adapter, make_message("@Pai 每天早上9点提醒我打卡", author="li", name="李"))
    assert "每天 09:00" in answer and "打卡" in answer
    (answer2,) = await say(app, adapter, make_message("@Pai remind us Friday 3pm to submit the report"))
    assert "Fri 2026-11-06 15:00" in answer2 and "submit the report" in answer2


async def test_a_replayed_command_makes_one_reminder(world):
    app, _, _ = await world.start()
    msg = make_message("/remind in 2h stand up")
    rem = skill(app, "reminders")
    created = await rem.create(msg, msg.text[len("/remind ") :], origin=f"cmd:{msg.event_id}")
    again = await rem.create(msg, msg.text[len("/remind ") :], origin=f"cmd:{msg.event_id}")
    assert "#1" in created and "#1" in again
    assert len(await rem.store.active("fake:g1")) == 1


def test_outgoing_contract_has_mentions():
    assert "mention_user_ids" in Outgoing.__dataclass_fields__
    assert datetime(2026, 11, 1, tzinfo=timezone.utc).tzinfo is not None


async def test_the_background_loop_fires_by_itself_once_woken(world):
    app, adapter, _ = await world.start(manual=False)
    await say(app, adapter, make_message("/remind in 1 min stretch"))
    world.clock.advance(120)
    skill(app, "reminders").loop.wake()
    await adapter.wait_sent(2)
    assert adapter.sent[-1].text == "⏰ Reminder for Alice: stretch"
