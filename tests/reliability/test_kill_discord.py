"""Nothing lost, nothing answered twice on Discord: ``python -m bot run`` against the fake Discord (REST and
gateway in this test process, real discord.py in the bot), SIGKILLed at random moments while members
post in several channels, restarted each time.

A message counts as acknowledged once the fake Discord stored it (Discord has it, whether or not the bot
was connected): after a restart the adapter must find it through channel history. After the last restart
every message is in the memory transcript, and every mention has exactly one reply. The seed is printed.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord
from tests.reliability.harness import (
    BotProcess,
    KillOutcome,
    figure,
    inbox_status,
    read_db,
    run_seed,
    soak,
    transcript_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


def discord_config(fake: FakeDiscord) -> str:
    return (
        "adapters:\n"
        "  web: {enabled: false}\n"
        f"  discord: {{enabled: true, token: '${{DISCORD_TOKEN}}', api_base: '{fake.api_base}', "
        f"gateway_url: '{fake.gateway_url}'}}\n"
    )


def cursors(data: Path) -> dict[str, str]:
    db = data / "paibot.db"
    if not db.exists():
        return {}
    try:
        with read_db(db) as conn:
            return dict(conn.execute("SELECT key, value FROM cursors").fetchall())
    except sqlite3.OperationalError:  # the bot is still creating its schema
        return {}


async def run_scenario(tmp_path: Path, *, messages: int, groups: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    fake = FakeDiscord()
    channels = [fake.general, fake.random] + [fake.add_channel(f"room{i}") for i in range(max(0, groups - 2))]
    channels = channels[:groups]
    people = [fake.add_user(f"member{i}") for i in range(8)]
    await fake.start()
    data = tmp_path / "data"
    bot = BotProcess(write_config(tmp_path, discord_config(fake)), tmp_path / "logs", {"DISCORD_TOKEN": fake.token})
    started = time.monotonic()
    sent: list[tuple[int, dict, bool]] = []  # (channel, message, is a mention)
    kill_points = sorted(rng.sample(range(max(1, messages // 20), messages), kills))
    mention = f"<@{fake.bot['id']}>"
    exit_code = None
    try:
        await bot.spawn()

        async def baselined() -> bool:  # the first backfill set every channel's cursor
            have = await asyncio.to_thread(cursors, data)
            return all(f"discord:last:{c}" in have for c in channels)

        try:
            await wait_for(baselined, 90)
        except TimeoutError:
            pytest.fail("the bot never connected\n" + bot.log_tail())

        async def killer() -> None:
            for point in kill_points:
                while len(sent) < point:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                await bot.kill()
                await asyncio.sleep(rng.uniform(0.0, 1.5))  # members keep posting while it is down
                await bot.spawn()

        kill_task = asyncio.create_task(killer(), name="killer")
        dog = asyncio.create_task(bot.watchdog(), name="bot-watchdog")
        try:
            for i in range(messages):
                if dog.done():
                    dog.result()
                channel = channels[i % len(channels)]
                who = people[rng.randrange(len(people))]
                is_mention = rng.random() < 0.2
                text = f"{mention} what about topic {i % 37}?" if is_mention else f"topic {i % 37}: note {i}"
                try:
                    msg = await fake.user_says(who, text, channel=channel)
                except (ConnectionError, RuntimeError):  # the bot's socket died mid-dispatch: stored anyway
                    msg = fake.messages[channel][-1]
                sent.append((channel, msg, is_mention))
                await asyncio.sleep(rng.uniform(0.0, 0.06))
            await bot.guard(kill_task, 120)
        finally:
            kill_task.cancel()
            dog.cancel()
            await asyncio.gather(kill_task, dog, return_exceptions=True)
        mentions = {m["id"] for _, m, is_m in sent if is_m}
        expected = {f"discord:{m['id']}" for _, m, _ in sent}

        async def settled() -> bool:
            status = await asyncio.to_thread(inbox_status, data)
            answered = {(m.get("message_reference") or {}).get("message_id") for m in fake.sent_by_bot()}
            return all(status.get(e) == "done" for e in expected) and mentions <= answered

        try:
            await bot.guard(wait_for(settled, 120 + messages * 0.05, every=1.0), 150 + messages * 0.05)
        except TimeoutError:
            pytest.fail("the bot did not catch up after the kills\n" + bot.log_tail())
        await asyncio.sleep(1.0)  # a late duplicate would show up now
        replies = Counter(
            m["message_reference"]["message_id"] for m in fake.sent_by_bot() if m.get("message_reference")
        )
    finally:
        if bot.alive:
            exit_code = await bot.terminate()
        await fake.stop()

    status = inbox_status(data)
    kept = transcript_ids(data)
    lost = [m["id"] for c, m, _ in sent if m["id"] not in kept.get(f"discord:{c}", set())]
    duplicated = sum(n - 1 for n in replies.values() if n > 1)
    unanswered = [i for i in mentions if replies.get(i, 0) == 0]
    stray = [i for i in replies if i not in mentions]
    line = figure(
        "discord kill", seed=seed, kills=bot.kills, restarts=bot.runs - 1, acknowledged=len(sent),
        lost=len(lost), mentions=len(mentions), replies=sum(replies.values()), duplicated_replies=duplicated,
        unanswered=len(unanswered), dead_letters=sum(1 for s in status.values() if s == "dead"),
        sigterm_exit=exit_code, seconds=round(time.monotonic() - started),
    )  # fmt: skip
    KillOutcome(line, bot.log_tail(), bot.kills, kills, lost, duplicated, stray, unanswered, exit_code).check()


async def test_random_sigkills_on_discord_lose_nothing_and_answer_once(tmp_path: Path) -> None:
    await run_scenario(tmp_path, messages=200, groups=6, kills=3, seed=run_seed())


@pytest.mark.soak
async def test_soak_random_sigkills_on_discord(tmp_path: Path) -> None:
    await soak(run_scenario, tmp_path)
