"""Cited recall: what the model sees about the group's past names who said it, when, and links to it."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from tests.fakes import ScriptedLLM, make_message
from tests.skill_world import say, world_fixture  # noqa: F401  (the "world" fixture)

LINK = "https://chat.example/g1/m-venue"


async def test_recalled_and_recent_lines_carry_author_time_and_link_and_the_rules_ask_for_citations(world):
    llm = ScriptedLLM(["Bob said on Oct 20 it's the Blue Hall (https://chat.example/g1/m-venue)."])
    app, adapter, _ = await world.start(llm)
    venue = dataclasses.replace(
        make_message(
            "the venue is the Blue Hall",
            author="bob",
            name="Bob",
            sent_at=datetime(2026, 10, 20, 9, 30, tzinfo=timezone.utc),
        ),
        url=LINK,
    )
    await adapter.inject(venue)
    await adapter.inject(make_message("no link on this platform", author="carol", name="Carol"))
    replies = await say(app, adapter, make_message("@Pai what was the venue?"))
    assert replies == ["Bob said on Oct 20 it's the Blue Hall (https://chat.example/g1/m-venue)."]
    system, user = (m["content"] for m in llm.calls[0]["messages"])
    assert f"[2026-10-20 17:30] Bob: the venue is the Blue Hall (link: {LINK})" in user  # Shanghai time
    assert (
        "Carol: no link on this platform\n" in user + "\n"
        and "Carol: no link on this platform (link" not in user
    )
    assert "say who said it and when, and give the message's link" in system
    assert "say you can't find it instead of guessing" in system
