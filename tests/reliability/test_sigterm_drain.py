"""SIGTERM drains: the bot process, asked to stop while the model is still answering, stops taking new
messages, finishes the answers in flight, flushes its state and exits 0. After a restart nothing that was
acknowledged is lost or left unanswered, and nothing is answered twice.

The model is the fake OpenAI-compatible server in this test process, reached through the real litellm
path; it takes two seconds per answer so that work is in flight when the signal arrives.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.fake_openai import Behaviour, FakeOpenAI
from tests.reliability.harness import (
    BotProcess,
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

THINK_S = 2.0


def llm_config(fake: FakeOpenAI) -> str:
    return (
        f"llm: {{model: openai/fake-main, api_base: '{fake.base_url}', api_key: sk-test-drain, timeout_s: 30,"
        " max_retries: 0}\n"
    )


def bot_replies(data: Path) -> Counter[int]:
    """reply_to id -> number of bot messages answering it, from the web group's own store."""
    with read_db(data / "web.db") as conn:
        rows = conn.execute("SELECT reply_to FROM messages WHERE is_bot=1 AND reply_to IS NOT NULL").fetchall()
    return Counter(r[0] for r in rows)


async def test_sigterm_finishes_work_in_flight_refuses_new_messages_and_exits_0(tmp_path: Path) -> None:
    fake = await FakeOpenAI(default=Behaviour(text="Here is my considered answer.", delay_s=THINK_S)).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    bot = BotProcess(write_config(tmp_path, web_only(port, llm_config(fake))), tmp_path / "logs")
    acked: dict[int, tuple[str, bool]] = {}  # message id -> (group, is a mention)
    refused_during_drain = 0
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await bot.spawn()
            await wait_for(lambda: web_ready(http, base), 90)
            groups, address_of = [], {}  # numbers (the core's chat ids); their addresses (the API's paths)
            for name in ("north", "south", "east"):
                async with http.post(f"{base}/api/groups", json={"name": name}) as resp:
                    created = await resp.json()
                    groups.append(created["number"])
                    address_of[created["number"]] = created["address"]
            ann = await member_headers(http, "Ann", base)

            async def post(group: str, text: str) -> int | None:
                try:
                    async with http.post(f"{base}/api/groups/{address_of[group]}/messages",
                                         json={"text": text}, headers=ann) as resp:  # fmt: skip
                        if resp.status != 200:
                            return None
                        mid = int((await resp.json())["id"])
                except (aiohttp.ClientError, OSError):
                    return None
                acked[mid] = (group, text.startswith("@Pai"))
                return mid

            for g in groups:
                await post(g, "the ferry leaves at nine")
                await post(g, "@Pai when does the ferry leave?")
            in_flight = [m for m, (_, mention) in acked.items() if mention]
            await asyncio.wait_for(_until(lambda: len(fake.requests) >= len(groups)), 60)

            assert bot.proc is not None
            bot.proc.send_signal(__import__("signal").SIGTERM)
            # Keep posting while it drains: these must be refused, not acknowledged and dropped.
            posted_after = 0
            while bot.proc.returncode is None and posted_after < 400:
                posted_after += 1
                if await post(groups[posted_after % len(groups)], f"late note {posted_after}") is None:
                    refused_during_drain += 1
                await asyncio.sleep(0.05)
            code = await bot.terminate(timeout=60)
            answered_before_exit = bot_replies(data)
            drained_status = inbox_status(data)

            # Restart: whatever was acknowledged (also during the drain) is kept and answered once.
            await bot.spawn()
            await wait_for(lambda: web_ready(http, base), 90)
            await post(groups[0], "@Pai and the last ferry?")
            mentions = {m for m, (_, is_m) in acked.items() if is_m}

            async def settled() -> bool:
                status = await asyncio.to_thread(inbox_status, data)
                done = all(status.get(f"web:{g}:{m}") == "done" for m, (g, _) in acked.items())
                return done and mentions <= set(await asyncio.to_thread(bot_replies, data))

            await wait_for(settled, 90, every=0.5)
            final_code = await bot.terminate()
    finally:
        if bot.alive:
            await bot.terminate()
        await fake.close()

    replies = bot_replies(data)
    kept = transcript_ids(data)
    lost = [m for m, (g, _) in acked.items() if str(m) not in kept.get(f"web:{g}", set())]
    line = figure(
        "sigterm drain", exit_code=code, in_flight=len(in_flight),
        finished_before_exit=sum(1 for m in in_flight if answered_before_exit.get(m)),
        left_pending=sum(1 for s in drained_status.values() if s == "pending"),
        refused_during_drain=refused_during_drain, acknowledged=len(acked), lost=len(lost),
        duplicated_replies=sum(n - 1 for n in replies.values() if n > 1),
        unanswered=sum(1 for m in mentions if not replies.get(m)), second_exit_code=final_code,
    )  # fmt: skip
    assert code == 0 and final_code == 0, line + "\n" + bot.log_tail()
    assert all(answered_before_exit.get(m) == 1 for m in in_flight), line  # in-flight work finished
    assert refused_during_drain > 0, line  # intake stopped while the answers were still being written
    assert lost == [], line
    assert all(replies.get(m) == 1 for m in mentions), line + "\n" + bot.log_tail()
    assert "stopping" in bot.log_text()


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.05)
