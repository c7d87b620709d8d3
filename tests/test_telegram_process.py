"""The real process under SIGKILL: ``python -m bot run`` against the fake Telegram, killed twice while
updates stream in, restarted each time. Afterwards every message is in the inbox exactly once and handled,
and every mention has exactly one reply.

The kills land while the bot is inside a ``sendMessage`` call (Telegram has posted the reply, the bot never
hears back), the hardest moment for "nothing twice"; meanwhile the stream keeps arriving, so updates are
fetched-but-uncommitted or not yet fetched at the moment of death. The bot runs without a model (the
no-model mode answers from memory), so no LLM is involved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.fake_telegram import FakeTelegram

pytestmark = pytest.mark.slow

GROUP = -1002000000001
PEOPLE = [FakeTelegram.user(100 + i, f"Member{i}") for i in range(3)]
MESSAGES = 24
MENTION_EVERY = 4
KILL_AT_SENDS = (2, 4)  # the 2nd and 4th reply: the process dies while Telegram answers


class BotProcess:
    """Starts ``python -m bot run`` and kills it; keeps each run's log for diagnosis."""

    def __init__(self, config: Path, token: str, logs: Path) -> None:
        self.config, self.token, self.logs = config, token, logs
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    async def spawn(self) -> None:
        self.runs += 1
        log = open(self.logs / f"run{self.runs}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "TG_TOKEN": self.token, "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(self.config),
            env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        )
        log.close()

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode or 0

    def log_tail(self) -> str:
        return "\n".join(
            f"--- run{i}\n" + (self.logs / f"run{i}.log").read_text(errors="replace")[-3000:]
            for i in range(1, self.runs + 1)
        )


def write_config(tmp_path: Path, fake: FakeTelegram) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "adapters:\n"
        "  web: {enabled: false}\n"
        "  telegram:\n"
        "    enabled: true\n"
        "    token: ${TG_TOKEN}\n"
        f"    base_url: {fake.base_url}\n"
        f"    base_file_url: {fake.base_file_url}\n"
        "    poll_timeout_s: 2\n",
        encoding="utf-8",
    )
    return cfg


def inbox_rows(db_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db_path, timeout=5) as db:
        return db.execute("SELECT event_id, status FROM inbox").fetchall()


async def wait_all_handled(db_path: Path, n: int, timeout: float) -> None:
    """Wait until the running bot's inbox holds ``n`` events, all handled (read-only, WAL allows it)."""

    async def loop() -> None:
        while True:
            rows = await asyncio.to_thread(inbox_rows, db_path)
            if len(rows) >= n and all(status == "done" for _, status in rows):
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(loop(), timeout)


async def test_sigkill_while_updates_stream_in_loses_and_duplicates_nothing(tmp_path):
    fake = await FakeTelegram().start()
    fake.chat(GROUP, title="Crash test")
    bot = BotProcess(write_config(tmp_path, fake), fake.token, tmp_path)
    restarted = asyncio.Event()
    kills: list[int] = []

    async def die_mid_send(method: str, params: dict, result: object) -> None:
        replies = sum(1 for m in fake.sent if "reply_to_message" in m)
        if method == "sendMessage" and replies in KILL_AT_SENDS and replies not in kills:
            kills.append(replies)
            await bot.kill()
            restarted.set()

    async def keep_restarting() -> None:
        while True:
            await restarted.wait()
            restarted.clear()
            await bot.spawn()

    fake.before_answer = die_mid_send
    mentions: list[int] = []
    all_ids: list[int] = []
    restarter = asyncio.create_task(keep_restarting(), name="restarter")
    try:
        await bot.spawn()
        await fake.wait_until(lambda: any(m == "getUpdates" for m, _ in fake.calls), timeout=30)
        for i in range(MESSAGES):
            who = PEOPLE[i % len(PEOPLE)]
            if i % MENTION_EVERY == 0:
                text = f"@pai_test_bot what did we say about topic {i}?"
                msg = await fake.message(GROUP, who, text, entities=[{"type": "mention", "offset": 0, "length": 13}])
                mentions.append(msg["message_id"])
            else:
                msg = await fake.message(GROUP, who, f"topic {i - i % MENTION_EVERY} detail {i}: lorem ipsum")
            all_ids.append(msg["message_id"])
            await asyncio.sleep(0.1)
        last_update = fake.updates[-1]["update_id"] if fake.updates else 0

        def finished() -> bool:
            answered = {m["reply_to_message"]["message_id"] for m in fake.sent if "reply_to_message" in m}
            return fake.confirmed_offset > last_update and answered >= set(mentions)

        try:
            await fake.wait_until(finished, timeout=45)
            await wait_all_handled(tmp_path / "data" / "paibot.db", len(all_ids), timeout=20)
        except TimeoutError:
            pytest.fail("the bot did not catch up after the kills\n" + bot.log_tail())
    finally:
        restarter.cancel()
        await asyncio.gather(restarter, return_exceptions=True)
        await bot.terminate()
        await fake.close()

    assert kills == list(KILL_AT_SENDS), bot.log_tail()
    assert bot.runs == 1 + len(KILL_AT_SENDS)
    # Zero duplicated replies, zero lost replies, no reply to a message that did not ask.
    replied_to = [m["reply_to_message"]["message_id"] for m in fake.sent if "reply_to_message" in m]
    assert sorted(replied_to) == sorted(mentions), bot.log_tail()
    assert len(fake.sent) == len(mentions)
    # Zero lost, zero duplicated messages: each is in the inbox once, and was handled.
    rows = inbox_rows(tmp_path / "data" / "paibot.db")
    expected = {f"telegram:{GROUP}:{mid}" for mid in all_ids}
    assert sorted(e for e, _ in rows) == sorted(expected)
    assert {s for _, s in rows} == {"done"}, bot.log_tail()
