"""Privacy through the core with the real memory store (SQLite transcript + FTS + embedded chroma with the
offline embedding): forget-me, what-do-you-know-about-me, opt-out/in, retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.ports import SearchFilters
from tests.fakes import make_message
from tests.skill_world import ADMIN, say, skill, world_fixture  # noqa: F401  (the "world" fixture)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def at(days: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


async def test_forget_me_removes_only_my_messages_in_this_group_from_every_index(world):
    app, adapter, mem = await world.start(memory="real")
    await adapter.inject(
        make_message("my secret recipe uses saffron", author="ann", name="Ann", sent_at=at(minutes=-9))
    )
    await adapter.inject(
        make_message("saffron is expensive", author="bob", name="Bob", sent_at=at(minutes=-8))
    )
    await adapter.inject(
        make_message(
            "ann's saffron in the other group", author="ann", name="Ann", chat="g2", sent_at=at(minutes=-7)
        )
    )
    await app.drain()
    await mem.flush()
    (done,) = await say(app, adapter, make_message("/forget-me", author="ann", name="Ann", sent_at=at()))
    assert done.startswith("Done: I removed 2 of your messages")  # the recipe and the /forget-me itself
    hits = await mem.search("fake:g1", "saffron recipe", k=10)
    assert [h.record.author_name for h in hits if not h.record.is_bot] == ["Bob"]
    assert await mem.search("fake:g1", "saffron", k=10, filters=SearchFilters(author_ids=("ann",))) == []
    assert "my secret recipe uses saffron" not in [r.text for r in await mem.recent("fake:g1", 50)]
    assert [h.record.text for h in await mem.search("fake:g2", "saffron", k=5)] == [
        "ann's saffron in the other group"
    ]


async def test_what_do_you_know_about_me_and_opt_out_then_in(world):
    app, adapter, mem = await world.start(memory="real")
    for i in range(5):
        await adapter.inject(
            make_message(f"note {i} from ann", author="ann", name="Ann", sent_at=at(minutes=i))
        )
    await adapter.inject(make_message("bob's line", author="bob", name="Bob", sent_at=at(minutes=6)))
    await app.drain()
    (known,) = await say(
        app, adapter, make_message("/what-do-you-know-about-me", author="ann", sent_at=at(minutes=7))
    )
    assert "• 5 messages, from 2026-11-01 20:00 to 2026-11-01 20:04" in known
    assert "note 4 from ann" in known and "note 1 from ann" not in known and "bob's line" not in known
    assert "Recording: on" in known and "/forget-me" in known
    (off,) = await say(app, adapter, make_message("/optout", author="ann", sent_at=at(minutes=8)))
    assert "don't record your messages" in off
    await say(app, adapter, make_message("unrecorded thought", author="ann", sent_at=at(minutes=9)))
    (known2,) = await say(app, adapter, make_message("/whatdoyouknow", author="ann", sent_at=at(minutes=10)))
    assert "Recording: off" in known2 and "unrecorded" not in known2
    assert "unrecorded thought" not in [
        h.record.text for h in await mem.search("fake:g1", "unrecorded thought", k=20)
    ]
    await say(app, adapter, make_message("/optin", author="ann", sent_at=at(minutes=11)))
    await say(app, adapter, make_message("recorded again", author="ann", sent_at=at(minutes=12)))
    assert "recorded again" in [r.text for r in await mem.recent("fake:g1", 5)]
    (nothing,) = await say(app, adapter, make_message("/whatdoyouknow", author="zed", sent_at=at(minutes=13)))
    assert "No messages of yours are stored here." in nothing


async def test_retention_purges_old_records_of_that_group_only(world):
    app, adapter, mem = await world.start(memory="real")
    for days in (-40, -20, -1):
        await adapter.inject(make_message(f"g1 from {-days} days ago", sent_at=at(days=days)))
        await adapter.inject(make_message(f"g2 from {-days} days ago", chat="g2", sent_at=at(days=days)))
    await app.drain()
    (ok,) = await say(app, adapter, make_message("/settings retention_days 30", author=ADMIN, sent_at=at()))
    assert ok == "retention_days is now 30 days."
    privacy = skill(app, "privacy")
    world.clock.advance(3600)  # the retention pass runs at start and then hourly
    assert await privacy.loop.tick() >= 1
    assert "g1 from 40 days ago" not in [r.text for r in await mem.recent("fake:g1", 50)]
    assert "g1 from 20 days ago" in [r.text for r in await mem.recent("fake:g1", 50)]
    assert len(await mem.recent("fake:g2", 50)) == 3  # no retention set there
    assert await privacy.loop.tick() == 0  # hourly
    world.clock.advance(15 * 86400)
    assert await privacy.loop.tick() >= 1  # the 20-day-old one is now 35 days old
    assert "g1 from 20 days ago" not in [r.text for r in await mem.recent("fake:g1", 50)]
    (known,) = await say(app, adapter, make_message("/whatdoyouknow", sent_at=at(days=15)))
    assert "Kept for 30 days" in known
