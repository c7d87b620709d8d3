"""/forget-me and retention reach every store through one Forgetter (real memory, default skills, fake
platform): the transcript and its indexes, reminders, to-dos, polls and votes, the attachment log, the
bot's own messages that quote her; other members keep theirs. In plain words the bot only explains."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.events import ReplyRef
from tests.fakes import make_message
from tests.skill_world import ADMIN, say, skill, world_fixture  # noqa: F401  (the "world" fixture)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


async def texts(mem, pai: str = "fake:g1") -> list[str]:
    return [r.text for r in await mem.recent(pai, 500)]


async def test_forget_me_reaches_her_reminders_todos_polls_votes_files_and_the_bots_quotes(world):
    app, adapter, mem = await world.start(memory="real")
    ann = dict(author="ann", name="Ann")
    await say(app, adapter, make_message("/remind in 2h water the saffron plants", sent_at=at(1), **ann))
    await say(app, adapter, make_message("/todo add book the lighthouse tour", sent_at=at(2), **ann))
    await say(app, adapter, make_message("/poll Lighthouse or museum? | lighthouse | museum", sent_at=at(3), **ann))
    await say(app, adapter, make_message("/poll Pizza or pasta? | pizza | pasta", author="bob", sent_at=at(4)))
    polls = skill(app, "polls")
    bob_poll = await polls.store.get("fake:g1", 2)
    assert bob_poll.message_id
    await say(app, adapter, make_message("1", reply_to=ReplyRef(bob_poll.message_id), sent_at=at(5), **ann))
    await say(app, adapter, make_message("2", reply_to=ReplyRef(bob_poll.message_id), author="bob", sent_at=at(6)))
    assert await polls.store.tally(bob_poll.id) == {1: 1, 2: 1}
    await say(app, adapter, make_message("/remind in 3h bob's own reminder", author="bob", sent_at=at(8)))
    await app.drain()
    before = await texts(mem)
    assert any("water the saffron plants" in t for t in before)  # the bot's confirmation quotes her

    (done,) = await say(app, adapter, make_message("/forget-me", sent_at=at(9), **ann))
    assert done.startswith("Done: I removed ") and "other items" in done

    after = await texts(mem)
    assert not any("saffron" in t or "lighthouse" in t.lower() for t in after), after
    assert any("bob's own reminder" in t for t in after)  # bob's things stay
    reminders = skill(app, "reminders")
    active = await reminders.store.active("fake:g1")
    assert [r.text for r in active] == ["bob's own reminder"]
    register = app.shared.register
    assert [i.text for i in await register.items("fake:g1", "todo")] == []
    ann_poll = await polls.store.get("fake:g1", 1)
    assert (ann_poll.status, ann_poll.question, ann_poll.options) == ("cancelled", "", ())
    assert await polls.store.tally(bob_poll.id) == {2: 1}  # only bob's vote is left
    world.clock.advance(3 * 3600)
    fired = await reminders.loop.tick()
    assert fired == 1 and "bob's own reminder" in adapter.sent[-1].text  # hers never fires


async def test_asked_in_plain_words_the_bot_explains_and_forgets_nothing(world):
    app, adapter, mem = await world.start(memory="real")
    await say(app, adapter, make_message("my favourite colour is teal", author="ann", sent_at=at(1)))
    (en,) = await say(app, adapter, make_message("@Pai forget what I said", author="ann", mentions_me=True, sent_at=at(2)))
    await say(app, adapter, make_message("我们周六去公园吧", author="ann", chat="g2", sent_at=at(3)))
    (zh,) = await say(app, adapter, make_message("@Pai 忘掉我说过的话", author="ann", chat="g2", mentions_me=True,
                                                 sent_at=at(4)))  # a group that writes Chinese reads Chinese
    assert "/forget-me" in en and "confirm" in en
    assert "/forget-me" in zh and "确认" in zh
    assert "my favourite colour is teal" in await texts(mem)


async def test_retention_expires_finished_items_everywhere_and_keeps_live_ones(world):
    app, adapter, mem = await world.start(memory="real")
    reminders = skill(app, "reminders")
    world.clock.advance(-40 * 86400)  # forty days ago
    await say(app, adapter, make_message("/remind in 1h old and done", author="ann", sent_at=at(days=-40)))
    await say(app, adapter, make_message("/remind every day 9:00 standup", author="ann", sent_at=at(days=-40)))
    await reminders.store.cancel("fake:g1", 1)
    world.clock.advance(40 * 86400)
    await say(app, adapter, make_message("fresh news", author="bob", sent_at=at(days=-1)))
    (ok,) = await say(app, adapter, make_message("/settings retention_days 30", author=ADMIN, sent_at=at()))
    assert "30" in ok
    world.clock.advance(3600)
    await skill(app, "privacy").loop.tick()
    remaining = await texts(mem)
    assert "fresh news" in remaining and not any(t.startswith("/remind") for t in remaining), remaining
    assert [r.text for r in await reminders.store.active("fake:g1")] == ["standup"]  # live: kept
    assert await reminders.store.get("fake:g1", 1) is None  # cancelled long ago: gone


async def test_a_checkpoint_after_forgetting_leaves_nothing_open_that_blocks_the_next_commit(tmp_path):
    # The WAL checkpoint pragma returns a row; left unread, its statement stayed open as long as the
    # awaited result lived, and every later COMMIT on that connection failed ("SQL statements in
    # progress"), leaving the connection stuck in a transaction.
    from bot.skills.skilldb import SkillDB
    from bot.state import StateDB, checkpoint

    state, skills = StateDB(tmp_path / "paibot.db"), SkillDB(tmp_path / "skills.sqlite3")
    try:
        kept = [await state.run(checkpoint), await skills.run(checkpoint)]  # results kept alive on purpose
        await state.run(lambda c: c.execute("INSERT INTO cursors(key, value) VALUES ('k', 'v')"), transaction=True)
        await skills.tx(lambda c: c.execute("INSERT INTO groups(group_key, platform, chat_id, title) "
                                            "VALUES ('web:1', 'web', '1', 'A')"))  # fmt: skip
        assert kept == [None, None]
        assert await state.run(lambda c: c.execute("SELECT value FROM cursors WHERE key='k'").fetchone()) == ("v",)
    finally:
        state.close()
        skills.close()
