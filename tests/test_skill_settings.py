"""Per-group settings through the core: who may change them, and that the member really uses them (name,
persona, language, time zone, quiet hours, proactive mode)."""

from __future__ import annotations

from datetime import timedelta

from tests.fakes import ScriptedLLM, make_message, tool_call
from tests.skill_world import ADMIN, say, skill, world_fixture  # noqa: F401  (the "world" fixture)


async def test_settings_show_sources_and_only_admins_change_them(world):
    app, adapter, _ = await world.start(extra='groups: {"fake:g1": {language: English}}\n')
    (shown,) = await say(app, adapter, make_message("/settings"))
    assert "name: Pai (default)" in shown and "language: English (config.yaml)" in shown
    assert "timezone: Asia/Shanghai (default)" in shown and "proactive: off (default)" in shown
    (refused,) = await say(app, adapter, make_message("/settings name Robo", author="mallory"))
    assert refused == "Only admins of this group can change its settings."
    (ok,) = await say(app, adapter, make_message("/settings name Robo", author=ADMIN))
    assert ok == "name is now Robo."
    (bad,) = await say(app, adapter, make_message("/settings timezone Mars/Olympus", author=ADMIN))
    assert bad.startswith("Not changed:") and "not a time zone" in bad
    (bad2,) = await say(app, adapter, make_message("/settings quiet_hours late", author=ADMIN))
    assert "23:00-07:00" in bad2
    (unknown,) = await say(app, adapter, make_message("/settings colour blue", author=ADMIN))
    assert "There is no setting 'colour'" in unknown
    (shown2,) = await say(app, adapter, make_message("/settings"))
    assert "name: Robo (set here)" in shown2
    (reset,) = await say(app, adapter, make_message("/settings name reset", author=ADMIN))
    assert reset == "name is back to Pai."
    (other,) = await say(app, adapter, make_message("/settings", chat="g2"))
    assert "language: auto (default)" in other  # another group is untouched


async def test_runtime_settings_survive_a_restart_and_drive_the_prompt(world):
    llm = ScriptedLLM(["ok"])
    app, adapter, _ = await world.start(llm)
    for cmd in (
        "/settings name Robo",
        "/settings persona You are {name}, a terse pirate.",
        "/settings language 中文",
        "/settings timezone Europe/Berlin",
    ):
        await say(app, adapter, make_message(cmd, author=ADMIN))
    await world.stop(app)
    app, adapter, _ = await world.start(llm)
    replies = await say(app, adapter, make_message("hey Robo, what time is it?"))  # the new name triggers
    assert replies == ["ok"]
    system = llm.calls[-1]["messages"][0]["content"]
    assert "You are Robo, a terse pirate." in system and "Your name is Robo" in system
    assert "Answer in 中文" in system and "(Europe/Berlin)" in system and "2026-11-01 13:00" in system
    assert app.services.tz_for("fake:g1").key == "Europe/Berlin"
    assert app.services.tz_for("fake:g2").key == "Asia/Shanghai"


async def test_settings_never_change_through_the_model_an_admin_is_told_the_command_to_send(world):
    llm = ScriptedLLM(
        [
            tool_call("update_group_setting", '{"name": "proactive", "value": "on", "group": "fake:g9"}'),
            "no",
            tool_call(
                "update_group_setting", '{"name": "quiet_hours", "value": "22:00-08:00", "chat": "fake:g9"}'
            ),
            "ok",
        ]
    )
    app, adapter, _ = await world.start(llm)
    await say(app, adapter, make_message("@Pai turn on proactive mode", author="mallory"))
    assert "Not changed" in llm.calls[1]["messages"][-1]["content"]
    await say(app, adapter, make_message("@Pai quiet hours 22-8 please", author=ADMIN))
    told = llm.calls[3]["messages"][-1]["content"]
    assert "Not changed" in told and "/settings quiet_hours 22:00-08:00" in told
    assert app.services.group_setting("fake:g1", "quiet_hours") == ""  # the admin's own command applies it
    await say(app, adapter, make_message("/settings quiet_hours 22:00-08:00", author=ADMIN))
    assert app.services.group_setting("fake:g1", "quiet_hours") == "22:00-08:00"
    assert app.services.group_setting("fake:g9", "quiet_hours") == ""
    assert app.services.group_setting("fake:g1", "proactive") is False


async def test_quiet_hours_hold_back_keyword_answers_but_not_mentions_or_reminders(world):
    app, adapter, _ = await world.start(extra="triggers: {keywords: [deploy], answer_within_minutes: 0}\n")
    await say(
        app, adapter, make_message("/settings quiet_hours 19:00-07:00", author=ADMIN)
    )  # now: 20:00 local
    assert await say(app, adapter, make_message("the deploy is broken")) == []
    assert len(await say(app, adapter, make_message("@Pai what about the deploy?"))) == 1
    await say(app, adapter, make_message("/remind in 5 min check the deploy"))
    world.clock.advance(300)
    assert await skill(app, "reminders").loop.tick() == 1
    world.clock.advance(timedelta(hours=12).total_seconds())  # 08:05 local: outside quiet hours
    assert len(await say(app, adapter, make_message("deploy again?"))) == 1


async def test_proactive_mode_is_off_by_default_then_answers_once_per_interval_and_never_for_bots(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("The wifi password is sunflower42", author="bob", name="Bob"))
    assert await say(app, adapter, make_message("what is the wifi password?", author="ann")) == []
    await say(app, adapter, make_message("/settings proactive on", author=ADMIN))
    assert (
        await say(app, adapter, make_message("what is the wifi password?", author="bot2", is_bot=True)) == []
    )
    (answer,) = await say(app, adapter, make_message("what is the wifi password?", author="ann"))
    assert "came up before" in answer and "Bob" in answer and "sunflower42" in answer
    assert (
        await say(app, adapter, make_message("what is the wifi password?", author="cat")) == []
    )  # rate limit
    world.clock.advance(31 * 60)
    assert len(await say(app, adapter, make_message("what is the wifi password again?", author="cat"))) == 1
    world.clock.advance(31 * 60)
    assert (
        await say(app, adapter, make_message("what is the capital of Peru?", author="cat")) == []
    )  # unknown
    assert await say(app, adapter, make_message("nice weather today", author="cat")) == []  # not a question


async def test_proactive_with_a_model_stays_silent_when_the_model_says_skip(world):
    llm = ScriptedLLM(["SKIP", "Bob said on Nov 1 it's sunflower42."])
    app, adapter, _ = await world.start(llm)
    await say(app, adapter, make_message("/settings proactive on", author=ADMIN))
    await say(app, adapter, make_message("The wifi password is sunflower42", author="bob", name="Bob"))
    assert await say(app, adapter, make_message("what is the wifi password?", author="ann")) == []
    assert "Question from Ann" in llm.prompts[0] and "sunflower42" in llm.prompts[0]
    replies = await say(app, adapter, make_message("what is the wifi password?", author="ann"))
    assert replies == ["Bob said on Nov 1 it's sunflower42."]


async def test_an_admin_asking_in_plain_chinese_is_told_the_exact_command_in_chinese(world):
    llm = ScriptedLLM([
        tool_call("update_group_setting", '{"name": "timezone", "value": "北京时间"}'), "好的",
        tool_call("update_group_setting", '{"name": "quiet_hours", "value": "23点到7点"}'), "好的",
    ])
    app, adapter, _ = await world.start(llm, tz="UTC")
    await say(app, adapter, make_message("@Pai 把时区改成北京时间", author=ADMIN))
    told = llm.calls[1]["messages"][-1]["content"]
    assert told.startswith("未修改") and "/settings timezone Asia/Shanghai" in told
    await say(app, adapter, make_message("@Pai 免打扰时间设成23点到7点", author=ADMIN))
    assert "/settings quiet_hours 23:00-07:00" in llm.calls[3]["messages"][-1]["content"]
    assert app.services.group_setting("fake:g1", "timezone") == "UTC"  # only the admin's own command changes it
    (done,) = await say(app, adapter, make_message("/settings timezone 北京时间", author=ADMIN))
    assert done == "timezone 已改为 Asia/Shanghai。"
    (quiet,) = await say(app, adapter, make_message("/settings quiet_hours 23点到7点", author=ADMIN))
    assert quiet == "quiet_hours 已改为 23:00-07:00。"
    (lang,) = await say(app, adapter, make_message("/settings language English", author=ADMIN))
    assert lang == "language is now English."  # the answer is already in the group's new language
