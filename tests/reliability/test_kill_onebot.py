"""Nothing lost, nothing answered twice on QQ: ``python -m bot run`` against the fake OneBot implementation
(forward WebSocket, in this test process), SIGKILLed at random moments while members post in several
groups, restarted each time.

OneBot has no acknowledgements: an event pushed while paibot is down, or pushed and not yet committed when
it is killed, is gone from the live stream. It is still in the group's history: after each restart the
adapter catches up from ``get_group_msg_history`` (back to a little before the newest message it had
committed). So a message counts as acknowledged once the fake implementation holds it (QQ has it), and
afterwards every message must be in the inbox (handled) and in the memory transcript, and no mention may
have two replies.

``send_group_msg`` is not idempotent: a kill while a reply is in flight leaves the bot unable to tell
whether it arrived, and it does not repeat it (at most once, journaled). Same figures as the other
adapters: zero lost, zero duplicated replies, at most one unanswered mention per chat in flight per kill,
each explained in the bot's log. The seed is printed (``PAIBOT_SOAK_SEED`` replays it).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from adapters.onebot.convert import fingerprint
from adapters.onebot.cqcode import normalize
from tests.fake_onebot import FakeOneBot, Stored
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

INTERRUPTED = re.compile(
    r"the reply to (onebot:\S+) (?:was interrupted by a restart and )?may not have arrived"
)
TOKEN = "kill-test-token"


def onebot_config(fake: FakeOneBot) -> str:
    return (
        "adapters:\n"
        "  web: {enabled: false}\n"
        "  onebot:\n"
        "    enabled: true\n"
        "    mode: forward\n"
        f"    url: {fake.ws_url}\n"
        "    access_token: ${OB_TOKEN}\n"
        "    send_interval_s: 0\n"
        "    group_per_minute: 0\n"
        "    global_per_minute: 0\n"
        "    backfill_pages: 20\n"
    )


def event_id(s: Stored) -> str:
    return f"onebot:{s.peer}:{fingerprint(str(s.user_id), s.time, normalize(s.segments))}"


def replies_by_target(fake: FakeOneBot) -> Counter[tuple[int, int]]:
    """(group, message id replied to) -> number of bot messages replying to it."""
    return Counter(
        (s.peer, int(seg["data"]["id"])) for s in fake.sent for seg in s.segments if seg["type"] == "reply"
    )


async def run_scenario(tmp_path: Path, *, messages: int, groups: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    fake = FakeOneBot(token=TOKEN)
    chats = [900_000 + g for g in range(groups)]
    people = [10_000 + i for i in range(8)]
    for g, chat in enumerate(chats):
        fake.group(chat, f"crash group {g}")
        for i, p in enumerate(people):
            fake.member(chat, p, f"member{i}", card=f"成员{i}")
    await fake.serve_ws()
    data = tmp_path / "data"
    bot = BotProcess(write_config(tmp_path, onebot_config(fake)), tmp_path / "logs", {"OB_TOKEN": TOKEN})
    started = time.monotonic()
    sent: list[tuple[Stored, bool]] = []  # (message, is a mention)
    kill_points = sorted(rng.sample(range(max(1, messages // 20), messages), kills))
    exit_code = None

    async def committed_something() -> bool:
        return any(e.startswith("onebot:") for e in await asyncio.to_thread(inbox_status, data))

    try:
        await bot.spawn()
        try:
            await fake.wait_until(lambda: fake.connections >= 1, timeout=90)
        except TimeoutError:
            pytest.fail("the bot never connected\n" + bot.log_tail())

        async def killer() -> None:
            # The first start catches up on nothing (history from before paibot is for imports): kill only
            # once it has committed a message, as any bot that has run for a moment has.
            await wait_for(committed_something, 60)
            for point in kill_points:
                while len(sent) < point:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                await bot.kill()
                await asyncio.sleep(rng.uniform(0.0, 1.5))  # members keep posting while it is down
                await bot.spawn()
                # The next kill lands on a bot that is up again (connected), not on one still importing.
                await fake.wait_until(lambda: fake.connections >= 1, timeout=90)

        kill_task = asyncio.create_task(killer(), name="killer")
        dog = asyncio.create_task(bot.watchdog(), name="bot-watchdog")
        try:
            for i in range(messages):
                if dog.done():
                    dog.result()
                chat = chats[i % len(chats)]
                who = people[rng.randrange(len(people))]
                if rng.random() < 0.2:
                    msg = await fake.post(chat, who, f"话题{i % 37}我们说到哪了？（第{i}条）", at_bot=True)
                    sent.append((msg, True))
                else:
                    msg = await fake.post(chat, who, f"话题{i % 37}：第{i}条笔记，来自成员{who}")
                    sent.append((msg, False))
                await asyncio.sleep(rng.uniform(0.0, 0.06))
            await bot.guard(kill_task, 120)
        finally:
            kill_task.cancel()
            dog.cancel()
            await asyncio.gather(kill_task, dog, return_exceptions=True)
        expected = {event_id(s) for s, _ in sent}

        async def settled() -> bool:
            status = await asyncio.to_thread(inbox_status, data)
            return all(status.get(e) == "done" for e in expected)

        try:
            await bot.guard(wait_for(settled, 120 + messages * 0.05, every=1.0), 150 + messages * 0.05)
        except TimeoutError:
            status = inbox_status(data)
            missing = [(s.peer, s.message_id, s.time, s.segments[-1]["data"].get("text"))
                       for s, _ in sent if status.get(event_id(s)) != "done"]  # fmt: skip
            pytest.fail(
                f"the bot did not catch up after the kills: {len(missing)} not handled, e.g. "
                f"{missing[:5]}\n" + bot.log_tail()
            )
        await asyncio.sleep(1.5)  # a late duplicate reply would show up now
        replies = replies_by_target(fake)
        all_bot_messages = len(fake.sent)
        attempted = {  # replies whose send_group_msg request reached the implementation at all
            (int(p["group_id"]), int(seg["data"]["id"]))
            for a, p in fake.calls if a == "send_group_msg"
            for seg in p["message"] if isinstance(seg, dict) and seg.get("type") == "reply"
        }  # fmt: skip
        own = {event_id(s) for s in fake.sent}  # the bot's replies, seen again in history
    finally:
        if bot.alive:
            exit_code = await bot.terminate()
        await fake.close()

    status = inbox_status(data)
    kept = transcript_ids(data)
    by_event = {(s.peer, s.message_id): event_id(s) for s, _ in sent}
    check_at_most_once(
        "onebot kill", bot=bot, kills=kills, groups=groups, seed=seed, started=started, exit_code=exit_code,
        interrupted=INTERRUPTED, acknowledged=len(sent),
        caught_up_from_history=sum(int(n) for n in re.findall(r"caught up on (\d+) message", bot.log_text())),
        mentions={(s.peer, s.message_id) for s, is_m in sent if is_m}, event_of=by_event.__getitem__,
        replies=replies, attempted=attempted,
        lost=[s.message_id for s, _ in sent if str(s.message_id) not in kept.get(f"onebot:{s.peer}", set())],
        not_handled=[e for e in expected if status.get(e) != "done"],
        stray_inbox=[e for e in status if e.startswith("onebot:") and e not in expected | own], status=status,
        posted=all_bot_messages, never_sent="unanswered_never_sent_to_qq",
    )


async def test_random_sigkills_on_qq_lose_nothing_and_answer_at_most_once(tmp_path: Path) -> None:
    await run_scenario(tmp_path, messages=200, groups=5, kills=3, seed=run_seed())


@pytest.mark.soak
async def test_soak_random_sigkills_on_qq(tmp_path: Path) -> None:
    await soak(run_scenario, tmp_path)
