"""Evidence, not echoes: a group that really uses Pai (questions to it, commands, its own answers) still finds
what members said, and "not found" is an answer. The real memory behind the real pipeline, no model and a
scripted one."""

from __future__ import annotations

import re

from tests.fakes import ScriptedLLM, make_message
from tests.skill_world import say, world_fixture  # noqa: F401  (the "world" fixture)

VENUE = "The venue is the Blue Hall, I booked it for Friday evening"
VENUE_ZH = "场地定在蓝色大厅，押金五百元已经付了"


async def busy_group(app, adapter, rounds: int = 12) -> None:  # type: ignore[no-untyped-def]
    """The facts, then rounds of what a group that uses Pai produces: questions to Pai about them (and Pai's
    answers, which quote the facts), searches, and chatter; about 140 messages in all."""
    await say(app, adapter, make_message(VENUE, author="alice", name="Alice"))
    await say(app, adapter, make_message(VENUE_ZH, author="bob", name="Bob"))
    for i in range(rounds):
        await say(app, adapter, make_message("@Pai what is the venue?", author="carol", name="Carol"))
        await say(app, adapter, make_message("/search venue", author="dan", name="Dan"))
        await say(app, adapter, make_message("@Pai 场地在哪里？押金多少？", author="carol", name="Carol"))
        for j in range(6):
            await say(app, adapter, make_message(f"round {i} chat {j}: snacks and drinks plan", author="dan", name="Dan"))


async def test_no_model_answer_and_search_quote_the_members_words_not_pai_or_questions(world):
    app, adapter, _ = await world.start(memory="real")
    await busy_group(app, adapter)
    (answer,) = await say(app, adapter, make_message("@Pai what is the venue?", author="erin", name="Erin"))
    assert "Alice" in answer and "Blue Hall" in answer
    assert "(bot)" not in answer and "@Pai" not in answer.split("\n\n")[0]
    (found,) = await say(app, adapter, make_message("/search venue", author="erin", name="Erin"))
    lines = [x for x in found.splitlines() if x.startswith("•")]
    assert lines[0].startswith("• Alice") and "Blue Hall" in lines[0]
    assert not any("Pai" in x.split(":")[0] or "/search" in x or "@Pai" in x for x in lines)
    (zh,) = await say(app, adapter, make_message("/search 押金", author="erin", name="Erin"))
    assert zh.splitlines()[1].startswith("• Bob") and "押金" in zh.splitlines()[1]


async def test_a_word_never_said_is_not_found(world):
    app, adapter, _ = await world.start(memory="real")
    await busy_group(app, adapter, rounds=2)
    (found,) = await say(app, adapter, make_message("/search zebracorn", author="erin", name="Erin"))
    assert found == "I can't find anything about that in this group's memory yet."
    (answer,) = await say(app, adapter, make_message("@Pai what did we say about the zebracorn?", author="erin"))
    assert answer.startswith("I can't find anything about that in this group's memory yet.")


async def test_what_pai_said_stays_findable_and_is_labelled_as_pais(world):
    app, adapter, _ = await world.start(memory="real")
    await busy_group(app, adapter, rounds=2)
    (found,) = await say(app, adapter, make_message("/search what did Pai say about the venue", author="erin"))
    assert "• Pai (bot)" in found
    (answer,) = await say(app, adapter, make_message("@Pai what did you say about the venue?", author="erin"))
    assert "Pai (bot)" in answer


async def test_traditional_characters_find_simplified_ones(world):
    app, adapter, _ = await world.start(memory="real")
    await say(app, adapter, make_message(VENUE_ZH, author="bob", name="Bob"))
    (found,) = await say(app, adapter, make_message("/search 場地 押金", author="erin", name="Erin"))
    assert "蓝色大厅" in found


async def test_the_recall_block_the_model_receives_holds_the_statement_after_heavy_use(world):
    llm = ScriptedLLM(lambda messages, tools: "I think it is the Blue Hall.")  # type: ignore[arg-type]
    app, adapter, _ = await world.start(llm, memory="real", extra="memory: {recent_messages: 10}\n")
    await busy_group(app, adapter)
    llm.calls.clear()
    await say(app, adapter, make_message("@Pai what is the venue?", author="erin", name="Erin"))
    user = llm.calls[-1]["messages"][1]["content"]
    recalled = re.search(r"<recalled_from_group_memory>\n(.*?)\n</recalled_from_group_memory>", user, re.S)
    assert recalled, "older messages were recalled"
    block = recalled.group(1).splitlines()
    assert any("Alice: The venue is the Blue Hall" in line for line in block)
    assert not any("(bot)" in line or "@Pai" in line or "/search" in line for line in block)


async def test_a_question_about_what_one_member_did_is_not_found_when_another_did_it(world):
    # LoCoMo's adversarial questions swap the person: the words are in the group, said of someone else
    app, adapter, _ = await world.start(memory="real")
    for text, author, name in (
        ("I ran a charity race for the shelter last Sunday", "mel", "Melanie"),
        ("That's wonderful, I painted a lake sunrise this week", "caro", "Caroline"),
        ("The race made me realize how much I love running", "mel", "Melanie"),
    ):
        await say(app, adapter, make_message(text, author=author, name=name))
    asked = "/search what did {} realize after her charity race?"
    (swapped,) = await say(app, adapter, make_message(asked.format("Caroline")))
    assert swapped == "I can't find anything about that in this group's memory yet."
    (right,) = await say(app, adapter, make_message(asked.format("Melanie")))
    assert "• Melanie" in right and "realize" in right
    (painted,) = await say(app, adapter, make_message("/search what did Caroline paint?"))
    assert "• Caroline" in painted and "lake sunrise" in painted


async def test_a_word_of_a_members_name_in_a_query_is_not_taken_for_her(world):
    app, adapter, _ = await world.start(memory="real")
    await say(app, adapter, make_message("The party is at the Blue Hall on Friday", author="bob", name="Bob"))
    await say(app, adapter, make_message("I'll bring the cake", author="pp", name="Party Planner"))
    (found,) = await say(app, adapter, make_message("/search where is the party on Friday?"))
    assert "• Bob" in found and "Blue Hall" in found
