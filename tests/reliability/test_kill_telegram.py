"""Nothing lost, nothing answered twice on Telegram: ``python -m bot run`` against the fake Telegram Bot API
(in this test process, real python-telegram-bot in the bot), SIGKILLed at random moments while members post
in several groups, restarted each time.

A message counts as acknowledged once the fake Telegram queued its update (Telegram has it whether or not
the bot is polling): the bot confirms updates only after its inbox committed them, so after a restart
``getUpdates`` hands the unconfirmed ones out again. Afterwards every message is in the inbox (handled) and
in the memory transcript, and no mention has two replies.

Telegram's ``sendMessage`` is not idempotent: a kill while a reply is in flight leaves the bot unable to
tell whether it arrived, and it does not repeat it (at most once). So a reply may be lost per kill, never
doubled: the test asserts zero duplicated replies, zero lost inbound messages and at most one unanswered
mention per kill, and prints the figure. The seed is printed (``PAIBOT_SOAK_SEED`` replays it).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_telegram import FakeTelegram
from tests.reliability.harness import (
    BotProcess,
    check_at_most_once,
    inbox_status,
    run_seed,
    soak,
    transcript_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

MENTION = "@pai_test_bot"
INTERRUPTED = re.compile(
    r"the reply to (telegram:\S+) (?:was interrupted by a restart and )?may not have arrived"
)


def telegram_config(fake: FakeTelegram) -> str:
    return (
        "adapters:\n"
        "  web: {enabled: false}\n"
        "  telegram:\n"
        "    enabled: true\n"
        "    token: ${TG_TOKEN}\n"
        f"    base_url: {fake.base_url}\n"
        f"    base_file_url: {fake.base_file_url}\n"
        "    poll_timeout_s: 2\n"
    )


def replies_by_target(fake: FakeTelegram) -> Counter[tuple[int, int]]:
    """(chat id, message id replied to) -> number of bot messages replying to it."""
    return Counter(
        (m["chat"]["id"], m["reply_to_message"]["message_id"]) for m in fake.sent if "reply_to_message" in m
    )


async def run_scenario(tmp_path: Path, *, messages: int, groups: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    fake = await FakeTelegram().start()
    chats = [-1002000000000 - g for g in range(groups)]
    for g, chat in enumerate(chats):
        fake.chat(chat, title=f"crash group {g}")
    people = [FakeTelegram.user(100 + i, f"Member{i}") for i in range(8)]
    data = tmp_path / "data"
    bot = BotProcess(
        write_config(tmp_path, telegram_config(fake)), tmp_path / "logs", {"TG_TOKEN": fake.token}
    )
    started = time.monotonic()
    sent: list[tuple[int, int, bool]] = []  # (chat, message id, is a mention)
    kill_points = sorted(rng.sample(range(max(1, messages // 20), messages), kills))
    exit_code = None
    try:
        await bot.spawn()
        try:
            await fake.wait_until(lambda: any(m == "getUpdates" for m, _ in fake.calls), timeout=90)
        except TimeoutError:
            pytest.fail("the bot never polled\n" + bot.log_tail())

        async def killer() -> None:
            for point in kill_points:
                while len(sent) < point:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                await bot.kill()
                await asyncio.sleep(rng.uniform(0.0, 1.5))  # members keep posting while it is down
                polls = len(fake.calls)
                await bot.spawn()
                # The next kill lands on a bot that is up again (polling), not on one still importing.
                await fake.wait_until(
                    lambda n=polls: any(m == "getUpdates" for m, _ in fake.calls[n:]), timeout=90
                )

        kill_task = asyncio.create_task(killer(), name="killer")
        dog = asyncio.create_task(bot.watchdog(), name="bot-watchdog")
        try:
            for i in range(messages):
                if dog.done():
                    dog.result()
                chat = chats[i % len(chats)]
                who = people[rng.randrange(len(people))]
                if rng.random() < 0.2:
                    text = f"{MENTION} what did we say about topic {i % 37}?"
                    entities = [{"type": "mention", "offset": 0, "length": len(MENTION)}]
                    msg = await fake.message(chat, who, text, entities=entities)
                    sent.append((chat, msg["message_id"], True))
                else:
                    msg = await fake.message(chat, who, f"topic {i % 37}: note {i} from {who['first_name']}")
                    sent.append((chat, msg["message_id"], False))
                await asyncio.sleep(rng.uniform(0.0, 0.06))
            await bot.guard(kill_task, 120)
        finally:
            kill_task.cancel()
            dog.cancel()
            await asyncio.gather(kill_task, dog, return_exceptions=True)
        expected = {f"telegram:{c}:{mid}" for c, mid, _ in sent}
        last_update = max((u["update_id"] for u in fake.updates), default=0)

        async def settled() -> bool:
            status = await asyncio.to_thread(inbox_status, data)
            return fake.confirmed_offset > last_update and all(status.get(e) == "done" for e in expected)

        try:
            await bot.guard(wait_for(settled, 120 + messages * 0.05, every=1.0), 150 + messages * 0.05)
        except TimeoutError:
            pytest.fail("the bot did not catch up after the kills\n" + bot.log_tail())
        await asyncio.sleep(1.5)  # a late duplicate reply would show up now
        replies = replies_by_target(fake)
        all_bot_messages = len(fake.sent)
        attempted = {  # replies whose sendMessage request reached Telegram at all
            (int(p["chat_id"]), int(p["reply_parameters"]["message_id"]))
            for m, p in fake.calls
            if m == "sendMessage" and p.get("reply_parameters")
        }
    finally:
        if bot.alive:
            exit_code = await bot.terminate()
        await fake.close()

    status = inbox_status(data)
    kept = transcript_ids(data)
    mentions = {(c, mid) for c, mid, is_m in sent if is_m}
    check_at_most_once(
        "telegram kill", bot=bot, kills=kills, groups=groups, seed=seed, started=started, exit_code=exit_code,
        interrupted=INTERRUPTED, acknowledged=len(sent), mentions=mentions,
        event_of=lambda m: f"telegram:{m[0]}:{m[1]}", replies=replies, attempted=attempted,
        lost=[(c, mid) for c, mid, _ in sent if str(mid) not in kept.get(f"telegram:{c}", set())],
        not_handled=[e for e in expected if status.get(e) != "done"],
        stray_inbox=[e for e in status if e.startswith("telegram:") and e not in expected], status=status,
        posted=all_bot_messages, never_sent="unanswered_never_sent_to_telegram",
    )


async def test_random_sigkills_on_telegram_lose_nothing_and_answer_at_most_once(tmp_path: Path) -> None:
    await run_scenario(tmp_path, messages=200, groups=5, kills=3, seed=run_seed())


@pytest.mark.soak
async def test_soak_random_sigkills_on_telegram(tmp_path: Path) -> None:
    await soak(run_scenario, tmp_path)
