"""A message that makes the handler fail every time ends in the dead-letter table after three attempts, and
the stream behind it (same group and other groups) is not held up.

The failure is real, with no hook in the bot: the memory transcript (SQLite) of the data directory carries
a trigger that aborts the insert of one particular text, the way a damaged page or a failing disk refuses
one write. The bot process handles the message, the memory write raises, the inbox counts the attempt;
after the third the event is dead, and a restart does not try it again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from memory.transcript import Transcript
from tests.reliability.harness import (
    BotProcess,
    dead_letters,
    figure,
    free_port,
    inbox_status,
    read_db,
    transcript_ids,
    wait_for,
    web_only,
    web_ready,
    write_config,
)
from tests.web_members import member_headers

pytestmark = pytest.mark.slow

POISON = "the cursed itinerary"


def poison_the_transcript(data: Path) -> None:
    """The transcript refuses, every time, to store a record whose text holds ``POISON``."""
    data.mkdir(parents=True, exist_ok=True)
    Transcript(data / "memory.sqlite3").close()  # the real schema
    with sqlite3.connect(data / "memory.sqlite3") as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_one BEFORE INSERT ON records WHEN NEW.text LIKE '%{POISON}%' "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated bad sector)'); END"
        )


def replies_in(data: Path) -> Counter[int]:
    with read_db(data / "web.db") as conn:
        rows = conn.execute("SELECT reply_to FROM messages WHERE is_bot=1 AND reply_to IS NOT NULL").fetchall()
    return Counter(r[0] for r in rows)


async def test_a_message_failing_every_time_is_dead_lettered_after_3_attempts_and_holds_nothing_up(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    poison_the_transcript(data)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bot = BotProcess(write_config(tmp_path, web_only(port)), tmp_path / "logs")
    posted: list[tuple[str, int, bool]] = []  # (group, id, is a mention)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await bot.spawn()
            await wait_for(lambda: web_ready(http, base), 90)
            groups, address_of = [], {}  # numbers (the core's chat ids); their addresses (the API's paths)
            for name in ("travel", "books"):
                async with http.post(f"{base}/api/groups", json={"name": name}) as resp:
                    created = await resp.json()
                    groups.append(created["number"])
                    address_of[created["number"]] = created["address"]
            travel, books = groups
            ann = await member_headers(http, "Ann", base)

            async def post(group: str, text: str) -> int:
                async with http.post(f"{base}/api/groups/{address_of[group]}/messages", json={"text": text}, headers=ann) as r:
                    assert r.status == 200, await r.text()
                    mid = int((await r.json())["id"])
                posted.append((group, mid, text.startswith("@Pai")))
                return mid

            await post(travel, "we land in Lisbon on Monday")
            poison = await post(travel, f"@Pai please read {POISON} and plan our days")
            for i in range(6):  # the stream behind it, in the same group and in another one
                await post(travel, f"day {i}: the tram to Belem leaves at {9 + i}")
                await post(travel, f"@Pai what do we do on day {i}?")
                await post(books, f"@Pai who wrote book number {i}?")
            poison_event = f"web:{travel}:{poison}"
            others = {f"web:{g}:{m}" for g, m, _ in posted if m != poison}
            mentions = {m for _, m, is_m in posted if is_m and m != poison}

            async def settled() -> bool:
                status = await asyncio.to_thread(inbox_status, data)
                answered = set(await asyncio.to_thread(replies_in, data))
                return (status.get(poison_event) == "dead" and all(status.get(e) == "done" for e in others)
                        and mentions <= answered)  # fmt: skip

            await bot.guard(wait_for(settled, 60), 90)
            first_dead = dead_letters(data)
            # A restart does not retry the dead letter nor answer anything again.
            assert await bot.terminate() == 0
            await bot.spawn()
            await wait_for(lambda: web_ready(http, base), 90)
            await post(books, "@Pai still there?")
            mentions.add(posted[-1][1])
            await bot.guard(wait_for(settled, 60), 90)
            code = await bot.terminate()
    finally:
        if bot.alive:
            await bot.terminate()

    dead = dead_letters(data)
    replies = replies_in(data)
    kept = transcript_ids(data)
    behind = [m for g, m, _ in posted if m > poison]
    line = figure(
        "dead letter", attempts=dead[0][1] if dead else 0, dead_letters=len(dead),
        handled_behind_it=sum(1 for g, m, _ in posted if m > poison and str(m) in kept.get(f"web:{g}", set())),
        behind_it=len(behind), mentions_answered=sum(1 for m in mentions if replies.get(m) == 1),
        mentions=len(mentions), poison_replies=replies.get(poison, 0), exit_code=code,
    )  # fmt: skip
    assert [(e, a) for e, a, _ in first_dead] == [(poison_event, 3)], line
    assert "disk I/O error" in first_dead[0][2], line
    assert [(e, a) for e, a, _ in dead] == [(poison_event, 3)], line  # not retried after the restart
    assert replies.get(poison, 0) == 0, line
    assert all(replies.get(m) == 1 for m in mentions), line
    assert all(str(m) in kept.get(f"web:{g}", set()) for g, m, _ in posted if m != poison), line
    assert code == 0, line
    assert "moved to the dead-letter table after 3 attempts" in bot.log_text()
