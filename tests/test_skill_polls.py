"""Polls and random picks through the core: text polls voted by reply, native polls, exactly-once closing
across a restart, the result recorded as a decision, and the model opening a poll in the caller's group."""

from __future__ import annotations

import random

from bot.events import ReplyRef
from bot.ports import Capabilities
from tests.fakes import FakeAdapter, ScriptedLLM, make_message, tool_call
from tests.skill_world import ADMIN, say, skill, world_fixture  # noqa: F401  (the "world" fixture)


def poll_ref(adapter, index=-1):
    """The id FakeAdapter gave the poll message (``bot-<n>``, counted over everything it sent)."""
    n = len(adapter.sent) + index + 1
    return f"bot-{n}", adapter.sent[index].text


async def test_text_poll_vote_by_reply_last_vote_wins_closes_once_and_records_a_decision(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/poll Where do we eat? | Luigi's | Sushi Go | Taco Town for 30m"))
    poll_msg = adapter.sent[-1]
    assert poll_msg.poll is None  # the fake platform has no native polls
    assert poll_msg.text.startswith("📊 Poll #1: Where do we eat?\n1. Luigi's\n2. Sushi Go\n3. Taco Town")
    assert "Reply to this message with the number" in poll_msg.text and "today 20:30" in poll_msg.text
    ref = ReplyRef(*poll_ref(adapter))
    # Votes are counted silently: the poll message itself shows the tally, edited in place.
    assert await say(app, adapter, make_message("2", author="ann", name="Ann", reply_to=ref)) == []
    assert adapter.edits[-1][0].message_id == ref.message_id
    assert adapter.edits[-1][1].endswith("2. Sushi Go — 1\n3. Taco Town — 0\n1 vote so far\n" + poll_msg.text.splitlines()[-1])
    await say(app, adapter, make_message("taco town", author="bob", name="Bob", reply_to=ref))
    await say(app, adapter, make_message("3", author="ann", name="Ann", reply_to=ref))  # Ann changes her mind
    assert await say(app, adapter, make_message("#3", author="cat", name="Cat", reply_to=ref)) == []
    assert "3. Taco Town — 3\n3 votes so far" in adapter.edits[-1][1]  # Ann counted once
    assert len(adapter.edits) == 4  # one tally, four updates; no message per vote
    (bad,) = await say(app, adapter, make_message("9", author="dan", reply_to=ref))
    assert "🗳️" not in bad  # not an option: an ordinary reply to the bot
    polls = skill(app, "polls")
    world.clock.advance(29 * 60)
    assert await polls.loop.tick() == 0
    world.clock.advance(60)
    assert await polls.loop.tick() == 1
    assert await polls.loop.tick() == 0
    result = adapter.sent[-1].text
    assert "📊 Poll #1 closed: Where do we eat?" in result and "3. Taco Town — 3" in result
    assert "Winner: Taco Town (3 of 3 votes)." in result and "Recorded as decision #1" in result
    (late,) = await say(app, adapter, make_message("1", author="eve", reply_to=ref))
    assert late == "Poll #1 is already closed."
    (decisions,) = await say(app, adapter, make_message("/decisions"))
    assert "Where do we eat? → Taco Town (poll #1)" in decisions


async def test_a_poll_due_while_down_closes_exactly_once_after_restarts(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/poll Tea or coffee? | tea | coffee for 10m"))
    await say(app, adapter, make_message("1", reply_to=ReplyRef(*poll_ref(adapter))))
    await world.stop(app)
    world.clock.advance(3600)
    app2, adapter2, _ = await world.start()
    assert await skill(app2, "polls").loop.tick() == 1
    assert "Winner: tea (1 of 1 vote)" in adapter2.sent[-1].text
    await world.stop(app2)
    app3, adapter3, _ = await world.start()
    assert await skill(app3, "polls").loop.tick() == 0 and adapter3.sent == []
    (decisions,) = await say(app3, adapter3, make_message("/decisions"))
    assert decisions.count("Tea or coffee?") == 1


async def test_native_polls_where_the_platform_has_them_and_reply_votes_still_count(world):
    native = FakeAdapter(capabilities=Capabilities(polls=True))
    app, adapter, _ = await world.start(adapter=native)
    await say(app, adapter, make_message("/poll Day? | Sat | Sun"))
    out = adapter.sent[-1]
    assert out.poll is not None and out.poll.options == ("Sat", "Sun") and out.poll.close_after_s == 3600
    assert "Vote in the poll, or reply" in out.text
    (vote,) = await say(app, adapter, make_message("2", reply_to=ReplyRef(*poll_ref(adapter))))
    assert "Sun" in vote


async def test_nobody_voted_and_ties(world):
    app, adapter, _ = await world.start()
    app.services.rng = random.Random(7)
    await say(app, adapter, make_message("/poll Q1? | a | b for 5m"))
    await say(app, adapter, make_message("/poll Q2? | x | y for 5m"))
    ref2 = ReplyRef(*poll_ref(adapter))
    await say(app, adapter, make_message("1", author="p", reply_to=ref2))
    await say(app, adapter, make_message("2", author="q", reply_to=ref2))
    world.clock.advance(600)
    assert await skill(app, "polls").loop.tick() == 2
    texts = [o.text for o in adapter.sent[-2:]]
    assert any("Nobody voted, so nothing was decided." in t for t in texts)
    assert any("Tie between x and y; I picked" in t for t in texts)


async def test_close_early_needs_the_opener_or_an_admin(world):
    app, adapter, _ = await world.start()
    await say(app, adapter, make_message("/poll Go? | yes | no", author="ann", name="Ann"))
    (no,) = await say(app, adapter, make_message("/poll close 1", author="bob"))
    assert "Only Ann" in no
    await say(app, adapter, make_message("/poll close 1", author=ADMIN))
    assert "📊 Poll #1 closed" in adapter.sent[-1].text


async def test_poll_usage_and_limits(world):
    app, adapter, _ = await world.start()
    (a,) = await say(app, adapter, make_message("/poll just a question"))
    (b,) = await say(app, adapter, make_message("/poll Q? | same | same"))
    assert a.startswith("Usage: /poll") and "two different options" in b


async def test_the_model_opens_a_poll_in_the_callers_group_only(world):
    llm = ScriptedLLM(
        [
            tool_call(
                "open_poll",
                '{"question": "Restaurant?", "options": ["Luigi\'s", "Sushi Go"], "minutes": 45, '
                '"chat_id": "other-group"}',
            ),
            "I opened a poll.",
        ]
    )
    app, adapter, _ = await world.start(llm)
    await adapter.inject(make_message("Luigi's or Sushi Go tonight?", chat="g5"))
    replies = await say(app, adapter, make_message("@Pai help us pick a restaurant", chat="g5"))
    assert replies[0].startswith("📊 Poll #1: Restaurant?") and replies[-1] == "I opened a poll."
    assert all(o.chat.key == "fake:g5" for o in adapter.sent)
    assert "Poll #1 is open until today 20:45" in llm.calls[1]["messages"][-1]["content"]
    assert await skill(app, "polls").store.open_polls("fake:other-group") == []


async def test_pick_is_random_from_the_injected_source(world):
    app, adapter, _ = await world.start()
    app.services.rng = random.Random(1)
    expected = random.Random(1).choice(["pizza", "sushi", "tacos"])
    (picked,) = await say(app, adapter, make_message("/pick pizza, sushi, tacos"))
    assert picked == f"🎲 I pick: {expected}"
    (spaces,) = await say(app, adapter, make_message("/pick 火锅 烤肉"))
    assert spaces.removeprefix("🎲 我选：") in ("火锅", "烤肉")  # the group's messages are half Chinese now
    (one,) = await say(app, adapter, make_message("/pick pizza"))
    assert "at least two" in one
