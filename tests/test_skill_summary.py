"""Summaries, catch-up and the decision/to-do register through the core, with and without a model."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from bot.events import ReplyRef
from tests.fakes import ScriptedLLM, make_message, tool_call
from tests.skill_world import say, skill, world_fixture  # noqa: F401  (the "world" fixture)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)  # the manual clock's start: Sunday 20:00 in Shanghai


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def chat_history(app, adapter):
    lines = [
        (-26 * 60, "old", "Old", "ancient history about the budget"),
        (-300, "bob", "Bob", "Venue options: Blue Hall or the rooftop"),
        (-290, "carol", "Carol", "Blue Hall is cheaper, the rooftop is nicer"),
        (-280, "bob", "Bob", "OK we decided: Blue Hall it is"),
        (-270, "carol", "Carol", "I'll book the Blue Hall by Friday"),
        (-260, "dave", "Dave", "What about catering? Still open"),
    ]
    for minutes, author, name, text in lines:
        await adapter.inject(make_message(text, author=author, name=name, sent_at=at(minutes)))
    await app.drain()


async def test_summary_without_a_model_is_an_honest_digest_of_the_window(world):
    app, adapter, _ = await world.start()
    await chat_history(app, adapter)
    (digest,) = await say(app, adapter, make_message("/summary", sent_at=at(0)))
    assert digest.startswith("📋 Digest since 2026-10-31 20:00")
    assert "mechanical digest" in digest and "not a real summary" in digest
    assert "5 messages from 3 people: Bob (2), Carol (2), Dave (1)" in digest
    assert "ancient history" not in digest  # older than the last 24 hours
    assert "Most discussed: blue (4), hall (4), rooftop (2)" in digest
    assert "Looks like a decision:\n• Bob, 2026-11-01 15:20: OK we decided: Blue Hall it is" in digest
    assert "Looks like a to-do:\n• Carol, 2026-11-01 15:30: I'll book the Blue Hall by Friday" in digest
    (short,) = await say(app, adapter, make_message("/summary 265 minutes", sent_at=at(1)))
    assert "1 message from 1 person: Dave (1)" in short  # commands (the /summary above) are not conversation
    (zh,) = await say(app, adapter, make_message("/summary 昨天", sent_at=at(2)))
    assert "Digest since 2026-10-31 00:00" in zh and "Old (1)" in zh
    (bad,) = await say(app, adapter, make_message("/summary whenever", sent_at=at(3)))
    assert "couldn't tell since when" in bad


SUMMARY_JSON = {
    "summary": "The group compared two venues and chose the Blue Hall.",
    "decisions": ["Venue: Blue Hall"],
    "open_questions": ["Catering"],
    "todos": [
        {"task": "Book the Blue Hall", "owner": "Carol", "due": "2026-11-06 17:00"},
        {"task": "Ask about catering", "owner": "", "due": ""},
    ],
}


async def test_summary_with_a_model_records_decisions_and_todos_and_a_due_todo_reminds_its_owner(world):
    llm = ScriptedLLM(["```json\n" + json.dumps(SUMMARY_JSON) + "\n```"])
    app, adapter, _ = await world.start(llm)
    await chat_history(app, adapter)
    (text,) = await say(app, adapter, make_message("/summary", sent_at=at(0)))
    prompt = llm.prompts[0]
    assert "Bob: OK we decided: Blue Hall it is" in prompt and "ancient history" not in prompt
    assert '"todos"' in prompt  # the structured instruction
    assert "✅ Decisions:\n• Venue: Blue Hall" in text and "❓ Open questions:\n• Catering" in text
    assert "#2 Book the Blue Hall — Carol, due Fri 2026-11-06 17:00" in text
    assert "#3 Ask about catering" in text
    (decisions,) = await say(app, adapter, make_message("/decisions"))
    assert "#1 Venue: Blue Hall" in decisions
    reminders = skill(app, "reminders")
    (rem,) = await reminders.store.active("fake:g1")
    assert rem.owner_id == "carol" and rem.source.startswith("todo:")
    world.clock.advance(5 * 86400)
    assert await reminders.loop.tick() == 1
    assert adapter.sent[-1].mention_user_ids == ("carol",)
    assert adapter.sent[-1].text.startswith("⏰ To-do due, Carol: Book the Blue Hall")


async def test_what_did_we_miss_goes_through_the_summarize_tool(world):
    llm = ScriptedLLM(
        [
            tool_call("summarize", '{"since": "yesterday"}'),
            json.dumps(SUMMARY_JSON),
            "Here's what you missed: the Blue Hall was chosen.",
        ]
    )
    app, adapter, _ = await world.start(llm)
    await chat_history(app, adapter)
    replies = await say(app, adapter, make_message("@Pai what did we miss since yesterday?", sent_at=at(0)))
    assert replies == ["Here's what you missed: the Blue Hall was chosen."]
    assert "ancient history" in llm.prompts[1]  # since yesterday 00:00 local
    tool_result = llm.calls[2]["messages"][-1]["content"]
    assert "Venue: Blue Hall" in tool_result and "Book the Blue Hall" in tool_result


async def test_what_i_missed_starts_at_my_last_message(world):
    app, adapter, _ = await world.start()
    await chat_history(app, adapter)
    (mine,) = await say(app, adapter, make_message("/summary me", author="bob", name="Bob", sent_at=at(0)))
    assert "Digest since 2026-11-01 15:20" in mine  # Bob's last message
    assert "2 messages from 2 people" in mine and "Carol (1), Dave (1)" in mine
    (new,) = await say(
        app, adapter, make_message("/summary me", author="newbie", name="Newbie", sent_at=at(1))
    )
    assert "haven't seen you write here before" in new


async def test_todo_add_list_and_done_by_command_and_by_replying_to_the_list(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("hi", author="carol", name="Carol"))
    (added,) = await say(app, adapter, make_message("/todo add book the venue @Carol by friday 5pm"))
    assert added.startswith("Added to-do #1 book the venue — Carol, due Fri 2026-11-06 17:00")
    assert "remind them" in added
    (a2,) = await say(app, adapter, make_message("/todo add 订酒店"))
    (a3,) = await say(app, adapter, make_message("/todo add order the cake"))
    assert "#2 订酒店" in a2 and "#3 order the cake" in a3
    (listing,) = await say(app, adapter, make_message("/todo"))
    assert listing.startswith("📝 To-dos in this group:") and "#2 订酒店" in listing
    list_id = adapter.sent[-1] and f"bot-{len(adapter.sent)}"
    (done,) = await say(app, adapter, make_message("done 2", reply_to=ReplyRef(list_id, listing)))
    assert done == "✅ Done: #2 订酒店"
    (done_zh,) = await say(app, adapter, make_message("完成 3", reply_to=ReplyRef(list_id, listing)))
    assert done_zh == "✅ Done: #3 order the cake"
    # "done 1" replying to a message that is not a to-do list is just a reply to the bot, not a to-do change
    (chat,) = await say(app, adapter, make_message("done 1", reply_to=ReplyRef("bot-1", "x")))
    assert "✅" not in chat
    (by_cmd,) = await say(app, adapter, make_message("/done 1"))
    assert by_cmd == "✅ Done: #1 book the venue"
    assert await skill(app, "reminders").store.active("fake:g1") == []  # its reminder went with it
    (again,) = await say(app, adapter, make_message("/done 1"))
    assert "no open to-do #1" in again
    (empty,) = await say(app, adapter, make_message("/todo"))
    assert "No open to-dos" in empty


async def test_register_is_per_group_and_tools_act_on_the_callers_group(world):
    llm = ScriptedLLM(
        [
            tool_call("add_todo", '{"task": "secret task", "group": "fake:A"}'),
            "added",
            tool_call("mark_todo_done", '{"number": 1, "chat": "fake:A"}'),
            "ok",
        ]
    )
    app, adapter, _ = await world.start(llm)
    await say(app, adapter, make_message("/todo add A's own task", chat="A"))
    await say(app, adapter, make_message("@Pai add a to-do", chat="B"))
    await say(app, adapter, make_message("@Pai mark 1 done", chat="B"))
    (a_list,) = await say(app, adapter, make_message("/todo", chat="A"))
    assert "#1 A's own task" in a_list and "secret" not in a_list
    (b_list,) = await say(app, adapter, make_message("/todo", chat="B"))
    assert "No open to-dos" in b_list  # B's #1 was the one marked done


async def test_three_summaries_of_overlapping_stretches_leave_one_register_entry_per_item(world):
    worded = [
        SUMMARY_JSON,
        {"summary": "Venue settled.", "decisions": ["We chose the Blue Hall as the venue"], "open_questions": [],
         "todos": [{"task": "Carol books the Blue Hall", "owner": "Carol", "due": "2026-11-06 17:00"},
                   {"task": "ask about the catering", "owner": "", "due": ""}]},
        {"summary": "Same again.", "decisions": ["The venue is the Blue Hall", "Budget: 500 euros"],
         "open_questions": [], "todos": [{"task": "Book the Blue Hall", "owner": "Carol", "due": ""},
                                         {"task": "Order the cake", "owner": "", "due": ""}]},
    ]  # fmt: skip
    llm = ScriptedLLM([json.dumps(w) for w in worded])
    app, adapter, _ = await world.start(llm)
    await chat_history(app, adapter)
    texts = [(await say(app, adapter, make_message("/summary", sent_at=at(i))))[0] for i in range(3)]
    assert "#2 Book the Blue Hall" in texts[0] and "#3 Ask about catering" in texts[0]
    assert "#2 Book the Blue Hall" in texts[1] and "#3 Ask about catering" in texts[1]  # the items on record
    assert "#2 Book the Blue Hall" in texts[2] and "#5 Order the cake" in texts[2]
    (decisions,) = await say(app, adapter, make_message("/decisions"))
    assert decisions.count("Blue Hall") == 1 and "Budget: 500 euros" in decisions
    (todos,) = await say(app, adapter, make_message("/todo"))
    assert todos.count("Blue Hall") == 1 and todos.count("catering") == 1 and "Order the cake" in todos
    reminders = skill(app, "reminders")
    assert len(await reminders.store.active("fake:g1")) == 1  # one reminder for the one booking to-do


async def test_the_digest_counts_words_not_character_pairs_and_never_the_bots_name(world):
    app, adapter, _ = await world.start()
    for text in ("谁订的场地？", "我订的场地，在蓝色大厅", "场地押金多少？押金我来付", "@Pai what about the deposit?",
                 "Pai, the deposit again?", "the deposit is paid"):  # fmt: skip
        await say(app, adapter, make_message(text, author="bob", name="Bob", sent_at=at(-10)))
    (text,) = await say(app, adapter, make_message("/summary", sent_at=at(0)))
    # the members' statements are mostly Chinese (the English questions to Pai do not decide): a Chinese digest
    terms = next(line for line in text.splitlines() if line.startswith("讨论最多："))
    assert "场地 (3)" in terms and "押金 (1)" not in terms and "deposit (3)" in terms
    assert "的场" not in terms and "订的" not in terms and "pai" not in terms.lower()
