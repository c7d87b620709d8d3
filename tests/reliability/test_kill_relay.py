"""A relay burst survives SIGKILLs: ``python -m bot run`` relays one 派 of two web groups and a Matrix room (a
real Synapse on loopback) while members post in all three, and is SIGKILLed at seeded random moments and
restarted each time.

Copies go through the relay queue and the reply ledger, and both platforms deduplicate sends (web
idempotency keys, Matrix transaction ids): every member message must end up exactly once in each other group,
nothing lost, nothing doubled. Mentions are answered exactly once where they were asked, and each answer is
passed on exactly once to the other groups. Every message is remembered once, where it was written (copies
never). The seed is printed (``PAIBOT_SOAK_SEED`` replays it).

(Telegram deduplicates nothing and paces a bot at 20 messages a minute per group, so it is not in this
burst; its copies use the same ledger as its replies, at most once, which tests/reliability/test_kill_telegram
covers.)
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.web.store import WebStore
from tests.matrix_helpers import Human
from tests.reliability.harness import (
    BotProcess,
    env_int,
    figure,
    free_port,
    inbox_status,
    transcript_ids,
    wait_for,
    web_ready,
    write_config,
)
from tests.reliability.test_kill_matrix import whole_history
from tests.reliability.test_kill_web import list_all
from tests.synapse_server import SynapseServer

pytestmark = [pytest.mark.slow, pytest.mark.synapse]


@dataclass
class Said:
    index: int
    where: str  # "web:<n>" or "matrix:<room>"
    author: int
    text: str
    mention: bool
    event_id: str = ""  # the inbox event id once the platform acknowledged it

    @property
    def local_id(self) -> str:
        return self.event_id.rsplit(":", 1)[1] if self.where.startswith("web:") else self.event_id[len("matrix:"):]


def config(web_port: int, server: SynapseServer, bot_user: str, inviter: str, groups: list[str]) -> str:
    keys = ", ".join(f"'{g}'" for g in groups)
    return (
        "adapters:\n"
        f"  web: {{enabled: true, host: 127.0.0.1, port: {web_port}, posts_per_s: 0}}\n"
        f"  matrix: {{enabled: true, homeserver: '{server.base_url}', user_id: '{bot_user}', "
        f"password: '${{MATRIX_PASSWORD}}', allowed_inviters: ['{inviter}']}}\n"
        f"pais: {{burst: {{groups: [{keys}], relay: true}}}}\n"
    )


def queued_relay_jobs(data: Path) -> int:
    db = data / "paibot.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM relay_jobs WHERE status='queued'").fetchone()[0])
    except sqlite3.OperationalError:
        return -1


_members: dict[tuple[str, str], dict[str, str]] = {}  # (server, nickname) -> headers
_addresses: dict[str, str] = {}  # a web group's number -> its address (what its API paths use)


async def web_member(http: aiohttp.ClientSession, base: str, nickname: str) -> dict[str, str]:
    """The member key of ``nickname`` (made once, retried while the bot is down: keys outlive restarts)."""
    delay = 0.05
    while (base, nickname) not in _members:
        try:
            async with http.post(f"{base}/api/members", json={"nickname": nickname}) as resp:
                if resp.status == 201:
                    _members[base, nickname] = {"Authorization": f"Member {(await resp.json())['key']}"}
                    break
                assert resp.status in (502, 503), f"unexpected {resp.status}: {await resp.text()}"
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)
    return _members[base, nickname]


async def post_web(http: aiohttp.ClientSession, base: str, msg: Said) -> None:
    """Post like the page does: retry with the same nonce until the bot acknowledges it."""
    group = msg.where.split(":", 1)[1]
    headers = await web_member(http, base, f"member{msg.author}")
    body = {"text": msg.text, "nonce": f"n{msg.index}"}
    delay = 0.05
    while True:
        try:
            async with http.post(f"{base}/api/groups/{_addresses[group]}/messages", json=body, headers=headers) as resp:
                if resp.status == 200:
                    msg.event_id = f"web:{group}:{(await resp.json())['id']}"
                    return
                assert resp.status in (502, 503), f"unexpected {resp.status}: {await resp.text()}"
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


class Groups:
    """What each group of the pai shows: (id, text, replied id, by the bot) per message."""

    def __init__(self, listed: dict[str, list[tuple[str, str, str, bool]]]) -> None:
        self.listed = listed

    def copies(self, where: str, text: str) -> list[tuple[str, str, str, bool]]:
        return [m for m in self.listed[where] if m[3] and m[1].endswith(f": {text}")]

    def replies_to(self, where: str, target: str) -> list[tuple[str, str, str, bool]]:
        return [m for m in self.listed[where] if m[3] and m[2] == target]


async def read_groups(http: aiohttp.ClientSession, base: str, human: Human, room: str, bot_user: str,
                      webs: list[str]) -> Groups:
    listed: dict[str, list[tuple[str, str, str, bool]]] = {}
    for n in webs:
        listed[f"web:{n}"] = [(str(m["id"]), m["text"], str((m["reply_to"] or {}).get("id", "")), m["is_bot"])
                              for m in await list_all(http, base, _addresses[n])]
    events: list[tuple[str, str, str, bool]] = []
    for e in await whole_history(human, room):
        if e.get("type") != "m.room.message" or "m.new_content" in (e.get("content") or {}):
            continue
        content: dict[str, Any] = e.get("content") or {}
        target = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id", "")
        events.append((e["event_id"], str(content.get("body", "")), target, e.get("sender") == bot_user))
    listed[f"matrix:{room}"] = events
    return Groups(listed)


async def run_scenario(tmp_path: Path, server: SynapseServer, *, messages: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    bot_user = server.register(server.unique("pai"), displayname="Pai")
    people = [Human(server, server.register(server.unique("member"), displayname=f"Member{i}")) for i in range(2)]
    room = await people[0].create_room(invite=[bot_user.user_id, people[1].user.user_id], name="burst room")
    await people[1].join(room)
    data = tmp_path / "data"
    data.mkdir()
    store = WebStore(data / "web.db")
    made = [store.create_group(f"burst web {g}") for g in range(2)]
    store.close()
    webs = [g.number for g in made]
    _addresses.update((g.number, g.address) for g in made)
    groups = [f"web:{n}" for n in webs] + [f"matrix:{room}"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = config(port, server, bot_user.user_id, people[0].user.user_id, groups)
    bot = BotProcess(write_config(tmp_path, cfg), tmp_path / "logs", {"MATRIX_PASSWORD": bot_user.password})
    plan = [Said(i, groups[i % 3], rng.randrange(2), "", rng.random() < 0.15) for i in range(messages)]
    for m in plan:
        m.text = f"Pai, what about item {m.index}?" if m.mention else f"note {m.index} from member{m.author}"
    done = 0
    started = time.monotonic()
    kill_points = sorted(rng.sample(range(max(1, messages // 10), messages), kills))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await bot.spawn()
            await bot.guard(wait_for(lambda: web_ready(http, base), 90), 100)
            await bot.guard(people[0].wait_membership(room, bot_user.user_id, "join"), 120)

            async def killer() -> None:
                for point in kill_points:
                    while done < point:
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(rng.uniform(0.0, 0.3))
                    await bot.kill()
                    await asyncio.sleep(rng.uniform(0.0, 1.0))  # members keep posting while it is down
                    await bot.spawn()

            async def poster(where: str) -> None:
                nonlocal done
                for msg in plan:
                    if msg.where != where:
                        continue
                    if where.startswith("web:"):
                        await post_web(http, base, msg)
                    else:
                        mentions = {"user_ids": [bot_user.user_id]} if msg.mention else {}
                        eid = await people[msg.author].say(room, msg.text, **{"m.mentions": mentions})
                        msg.event_id = f"matrix:{eid}"
                    done += 1

            kill_task = asyncio.create_task(killer(), name="killer")
            try:
                await bot.guard(asyncio.gather(*(poster(g) for g in groups)), 120 + messages)
                await bot.guard(kill_task, 120)
            finally:
                kill_task.cancel()
                await asyncio.gather(kill_task, return_exceptions=True)

            async def settled() -> bool:
                status = await asyncio.to_thread(inbox_status, data)
                if not all(status.get(m.event_id) == "done" for m in plan):
                    return False
                if await asyncio.to_thread(queued_relay_jobs, data) != 0:
                    return False
                seen = await read_groups(http, base, people[0], room, bot_user.user_id, webs)
                return all(seen.replies_to(m.where, m.local_id) for m in plan if m.mention)

            try:
                await bot.guard(wait_for(settled, 240, every=1.0), 260)
            except TimeoutError:
                pytest.fail("the bot did not catch up after the kills\n" + bot.log_tail())
            await asyncio.sleep(2.0)  # a late duplicate would show up now
            seen = await read_groups(http, base, people[0], room, bot_user.user_id, webs)
    finally:
        exit_code = await bot.terminate() if bot.alive else None
        for p in people:
            await p.close()

    lost = doubled = answers_off = answer_copies_off = 0
    for msg in plan:
        for where in groups:
            if where == msg.where:
                continue
            count = len(seen.copies(where, msg.text))
            lost += count == 0
            doubled += max(0, count - 1)
        if not msg.mention:
            continue
        answers = seen.replies_to(msg.where, msg.local_id)
        answers_off += len(answers) != 1
        for where in groups:
            copy = seen.copies(where, msg.text) if where != msg.where else []
            if copy:
                answer_copies_off += len(seen.replies_to(where, copy[0][0])) != 1
    kept = transcript_ids(data)
    remembered = sum(len(ids) for ids in kept.values())
    mentions = sum(m.mention for m in plan)
    line = figure(
        "relay kill", seed=seed, kills=bot.kills, messages=messages, mentions=mentions, copies_lost=lost,
        copies_doubled=doubled, answers_not_once=answers_off, answer_copies_not_once=answer_copies_off,
        records=remembered, sigterm_exit=exit_code, seconds=round(time.monotonic() - started),
    )  # fmt: skip
    assert bot.kills == kills, line
    assert lost == 0 and doubled == 0, line + "\n" + bot.log_tail()
    assert answers_off == 0 and answer_copies_off == 0, line + "\n" + bot.log_tail()
    for msg in plan:  # each message once in memory, under the chat it was written in
        assert f"{msg.where}#{msg.local_id}" in kept.get(msg.where, set()), (line, msg)
    assert remembered == messages + mentions, line  # the members' messages and the bot's answers, no copy
    assert exit_code == 0, line + "\n" + bot.log_tail()


async def test_sigkills_during_a_relay_burst_lose_and_double_nothing(
    tmp_path: Path, synapse: SynapseServer  # noqa: F811
) -> None:
    seed = env_int("PAIBOT_SOAK_SEED", 0) or random.SystemRandom().randrange(1, 10**6)
    await run_scenario(tmp_path, synapse, messages=120, kills=3, seed=seed)


@pytest.mark.soak
async def test_soak_sigkills_during_a_relay_burst(tmp_path: Path, synapse: SynapseServer) -> None:  # noqa: F811
    seed = env_int("PAIBOT_SOAK_SEED", 0) or random.SystemRandom().randrange(1, 10**6)
    await run_scenario(tmp_path, synapse, messages=env_int("PAIBOT_SOAK_MESSAGES", 1200),
                       kills=env_int("PAIBOT_SOAK_KILLS", 20), seed=seed)
