"""Network faults to the platform: the link between the bot process and the (fake) Discord breaks for a
while. During the outage the bot retries with backoff (jittered, growing gaps) rather than in a hot loop:
the connection attempts it makes are counted at the broken link and stay few. When the link heals it
reconnects by itself, catches up on what was said meanwhile (history backfill), answers the mention made
during the outage once, and answers new mentions live.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord
from tests.reliability.harness import (
    BotProcess,
    env_int,
    figure,
    inbox_status,
    transcript_ids,
    wait_for,
    write_config,
)
from tests.reliability.netfault import FlakyLink
from tests.reliability.test_kill_discord import cursors

pytestmark = pytest.mark.slow


def replies(fake: FakeDiscord) -> Counter[str]:
    return Counter(m["message_reference"]["message_id"] for m in fake.sent_by_bot() if m.get("message_reference"))


async def run_scenario(tmp_path: Path, outage_s: float, max_attempts: int) -> None:
    fake = FakeDiscord()
    await fake.start()
    link = await FlakyLink(fake.port).start()
    via = f"http://127.0.0.1:{link.port}"
    cfg = write_config(tmp_path, (
        "adapters:\n  web: {enabled: false}\n"
        f"  discord: {{enabled: true, token: '${{DISCORD_TOKEN}}', api_base: '{via}/api/v10', "
        f"gateway_url: 'ws://127.0.0.1:{link.port}/gateway'}}\n"
    ))  # fmt: skip
    data = tmp_path / "data"
    bot = BotProcess(cfg, tmp_path / "logs", {"DISCORD_TOKEN": fake.token})
    ann = fake.add_user("ann")
    mention = f"<@{fake.bot['id']}>"
    code = None
    try:
        await bot.spawn()
        await bot.guard(wait_for(lambda: asyncio.to_thread(lambda: f"discord:last:{fake.general}" in cursors(data)), 90), 100)
        before = await fake.user_says(ann, f"{mention} are you there?")
        await bot.guard(wait_for(lambda: _true(replies(fake).get(before["id"])), 60), 70)

        # The outage: open connections are cut, new ones reset; members keep talking meanwhile.
        await link.break_()
        broke_at = time.monotonic()
        during = [await fake.user_says(ann, f"note {i} said while the bot is cut off") for i in range(5)]
        during.append(await fake.user_says(ann, f"{mention} did you miss anything?"))
        await bot.guard(asyncio.sleep(outage_s), outage_s + 10)
        attempts = list(link.attempts_while_broken)
        link.heal()
        healed_at = time.monotonic()

        # Recovery: the missed messages arrive, the missed mention is answered, a live one too.
        expected = {f"discord:{m['id']}" for m in during}

        async def caught_up() -> bool:
            status = await asyncio.to_thread(inbox_status, data)
            return all(status.get(e) == "done" for e in expected) and bool(replies(fake).get(during[-1]["id"]))

        await bot.guard(wait_for(caught_up, 120 + 3 * outage_s), 130 + 3 * outage_s)
        recovered_after = time.monotonic() - healed_at
        after = await fake.user_says(ann, f"{mention} and now?")
        await bot.guard(wait_for(lambda: _true(replies(fake).get(after["id"])), 60), 70)
        await asyncio.sleep(1.0)
        final = replies(fake)
        code = await bot.terminate()
    finally:
        if bot.alive:
            await bot.terminate()
        await link.close()
        await fake.stop()

    kept = transcript_ids(data).get(f"discord:{fake.general}", set())
    gaps = [round(b - a, 1) for a, b in zip([broke_at, *attempts], attempts)]
    line = figure(
        "discord outage", outage_s=outage_s, connection_attempts=len(attempts), gaps_s=gaps,
        recovered_in_s=round(recovered_after, 1), missed_messages_kept=f"{sum(m['id'] in kept for m in during)}/{len(during)}",
        replies_per_mention=sorted(final.values()), exit_code=code,
    )  # fmt: skip
    assert 1 <= len(attempts) <= max_attempts, line  # it tried, and not in a hot loop
    assert all(m["id"] in kept for m in during), line
    assert final == Counter({before["id"]: 1, during[-1]["id"]: 1, after["id"]: 1}), line
    assert code == 0, line + "\n" + bot.log_tail()


async def _true(value: object) -> bool:
    return bool(value)


async def test_platform_outage_is_retried_with_backoff_and_the_bot_recovers(tmp_path: Path) -> None:
    await run_scenario(tmp_path, outage_s=10.0, max_attempts=20)


@pytest.mark.soak
async def test_soak_long_platform_outage(tmp_path: Path) -> None:
    await run_scenario(tmp_path, outage_s=float(env_int("PAIBOT_SOAK_OUTAGE_S", 180)), max_attempts=40)


async def test_a_reply_failing_because_the_platform_is_down_is_answered_after_it_heals(tmp_path: Path) -> None:
    """The link breaks while the bot is thinking about a mention: the send fails. Once the platform is
    back, the mention must still be answered (once), not written off as a poison message."""
    from tests.fake_openai import Behaviour, FakeOpenAI

    llm = await FakeOpenAI(default=Behaviour(text="Sorry for the wait: here it is.", delay_s=0.5)).start()
    fake = FakeDiscord()
    await fake.start()
    link = await FlakyLink(fake.port).start()
    cfg = write_config(tmp_path, (
        f"llm: {{model: openai/fake-main, api_base: '{llm.base_url}', api_key: sk-x, max_retries: 0}}\n"
        "adapters:\n  web: {enabled: false}\n"
        f"  discord: {{enabled: true, token: '${{DISCORD_TOKEN}}', api_base: 'http://127.0.0.1:{link.port}/api/v10', "
        f"gateway_url: 'ws://127.0.0.1:{link.port}/gateway'}}\n"
    ))  # fmt: skip
    data = tmp_path / "data"
    bot = BotProcess(cfg, tmp_path / "logs", {"DISCORD_TOKEN": fake.token})
    ann = fake.add_user("ann")
    try:
        await bot.spawn()
        await bot.guard(wait_for(lambda: asyncio.to_thread(lambda: f"discord:last:{fake.general}" in cursors(data)), 90), 100)
        asked = await fake.user_says(ann, f"<@{fake.bot['id']}> what is the plan?")
        await bot.guard(wait_for(lambda: _true(llm.requests), 60), 70)
        await link.break_()  # the model is still answering; the reply will find the platform gone
        await asyncio.sleep(6.0)  # longer than the worker's three attempts
        link.heal()

        async def answered_or_given_up() -> bool:
            dead = (await asyncio.to_thread(inbox_status, data)).get(f"discord:{asked['id']}") == "dead"
            return dead or bool(replies(fake).get(asked["id"]))

        await bot.guard(wait_for(answered_or_given_up, 120), 130)
        await asyncio.sleep(1.0)
        status = inbox_status(data).get(f"discord:{asked['id']}")
        got = replies(fake).get(asked["id"], 0)
    finally:
        if bot.alive:
            await bot.terminate()
        await link.close()
        await fake.stop()
        await llm.close()
    line = figure("reply during outage", inbox_status=status, replies=got, model_calls=len(llm.requests))
    assert got == 1 and status == "done" and len(llm.requests) == 1, line
