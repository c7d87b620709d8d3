"""Nothing lost, nothing answered twice on Matrix (soak only): ``python -m bot run`` against a real Synapse on
loopback, SIGKILLed at seeded random moments while members post in many rooms, restarted each time.

A message counts as acknowledged once Synapse accepted it (it has an event id): after a restart the adapter
must find what it missed through sync and backfill. Matrix sends are idempotent (the transaction id is the
triggering event), so an interrupted reply is resent and deduplicated: after the last restart every message
is in the inbox (handled) and in the memory transcript, and every mention has exactly one reply. Needs the
``.synapse-venv`` that ``make test`` installs; sizes via ``PAIBOT_SOAK_*`` like the other soak runs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nio import ErrorResponse, MessageDirection

from tests.matrix_helpers import Human
from tests.reliability.harness import (
    BotProcess,
    KillOutcome,
    figure,
    inbox_status,
    soak,
    transcript_ids,
    wait_for,
    write_config,
)
from tests.synapse_server import SynapseServer

pytestmark = [pytest.mark.slow, pytest.mark.synapse]


def matrix_config(server: SynapseServer, bot_user: str, inviter: str) -> str:
    return (
        "adapters:\n"
        "  web: {enabled: false}\n"
        f"  matrix: {{enabled: true, homeserver: '{server.base_url}', user_id: '{bot_user}', "
        f"password: '${{MATRIX_PASSWORD}}', allowed_inviters: ['{inviter}']}}\n"
    )


async def whole_history(human: Human, room: str) -> list[dict[str, Any]]:
    """Every event of ``room`` (paginating backwards to the start), as raw dicts."""
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        resp = await human.client.room_messages(room, start=token, direction=MessageDirection.back, limit=500)
        assert not isinstance(resp, ErrorResponse), resp
        out.extend(e.source for e in resp.chunk)
        if not resp.chunk or not resp.end or resp.end == token:
            return out
        token = resp.end


def reply_target(event: dict[str, Any]) -> str | None:
    rel = (event.get("content") or {}).get("m.relates_to") or {}
    return (rel.get("m.in_reply_to") or {}).get("event_id")


async def run_scenario(
    tmp_path: Path, server: SynapseServer, *, messages: int, groups: int, kills: int, seed: int
) -> None:
    rng = random.Random(seed)
    bot_user = server.register(server.unique("pai"), displayname="Pai")
    people = [
        Human(server, server.register(server.unique("member"), displayname=f"Member{i}")) for i in range(4)
    ]
    owner = people[0]
    data = tmp_path / "data"
    cfg = write_config(tmp_path, matrix_config(server, bot_user.user_id, owner.user.user_id))
    bot = BotProcess(cfg, tmp_path / "logs", {"MATRIX_PASSWORD": bot_user.password})
    started = time.monotonic()
    sent: list[tuple[str, str, bool]] = []  # (room, event id, is a mention)
    kill_points = sorted(rng.sample(range(max(1, messages // 20), messages), kills))
    asks = [rng.random() < 0.2 for _ in range(messages)]  # which messages mention the bot
    exit_code = None
    rooms: list[str] = []
    try:
        await bot.spawn()
        for g in range(groups):
            room = await owner.create_room(
                invite=[bot_user.user_id] + [p.user.user_id for p in people[1:]], name=f"crash room {g}"
            )
            for p in people[1:]:
                await p.join(room)
            rooms.append(room)
        try:
            await bot.guard(
                asyncio.gather(*(owner.wait_membership(r, bot_user.user_id, "join") for r in rooms)), 120
            )
        except TimeoutError:
            pytest.fail("the bot never joined the rooms\n" + bot.log_tail())

        async def killer() -> None:
            for point in kill_points:
                while len(sent) < point:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                await bot.kill()
                await asyncio.sleep(rng.uniform(0.0, 1.5))  # members keep posting while it is down
                await bot.spawn()

        async def poster(lane: int) -> None:
            for i in range(lane, messages, len(people)):
                room = rooms[i % len(rooms)]
                who = people[lane]
                if asks[i]:
                    text = f"Pai, what did we say about topic {i % 37}?"
                    mentions = {"m.mentions": {"user_ids": [bot_user.user_id]}}
                    sent.append((room, await who.say(room, text, **mentions), True))
                else:
                    sent.append(
                        (room, await who.say(room, f"topic {i % 37}: note {i}", **{"m.mentions": {}}), False)
                    )

        kill_task = asyncio.create_task(killer(), name="killer")
        try:
            await bot.guard(asyncio.gather(*(poster(n) for n in range(len(people)))), 120 + messages * 0.5)
            await bot.guard(kill_task, 120)
        finally:
            kill_task.cancel()
            await asyncio.gather(kill_task, return_exceptions=True)
        expected = {f"matrix:{eid}" for _, eid, _ in sent}
        mentions = {eid for _, eid, is_m in sent if is_m}

        async def bot_replies() -> Counter[str]:
            counts: Counter[str] = Counter()
            for room in rooms:
                for e in await whole_history(owner, room):
                    if e.get("type") == "m.room.message" and e.get("sender") == bot_user.user_id:
                        target = reply_target(e)
                        if target:
                            counts[target] += 1
            return counts

        async def settled() -> bool:
            status = await asyncio.to_thread(inbox_status, data)
            return all(status.get(e) == "done" for e in expected) and mentions <= set(await bot_replies())

        try:
            await bot.guard(wait_for(settled, 180 + messages * 0.05, every=3.0), 210 + messages * 0.05)
        except TimeoutError:
            pytest.fail("the bot did not catch up after the kills\n" + bot.log_tail())
        await asyncio.sleep(3.0)  # a late duplicate would show up now
        replies = await bot_replies()
    finally:
        if bot.alive:
            exit_code = await bot.terminate()
        for p in people:
            await p.close()

    status = inbox_status(data)
    kept = transcript_ids(data)
    lost = [eid for room, eid, _ in sent if eid not in kept.get(f"matrix:{room}", set())]
    duplicated = sum(n - 1 for n in replies.values() if n > 1)
    unanswered = [i for i in mentions if replies.get(i, 0) == 0]
    stray = [i for i in replies if i not in mentions]
    line = figure(
        "matrix kill", seed=seed, kills=bot.kills, restarts=bot.runs - 1, acknowledged=len(sent),
        lost=len(lost), mentions=len(mentions), replies=sum(replies.values()), duplicated_replies=duplicated,
        unanswered=len(unanswered), dead_letters=sum(1 for s in status.values() if s == "dead"),
        sigterm_exit=exit_code, seconds=round(time.monotonic() - started),
    )  # fmt: skip
    assert len(sent) == messages, line
    not_done = [e for e in expected if status.get(e) != "done"]
    KillOutcome(line, bot.log_tail(), bot.kills, kills, lost, duplicated, stray, unanswered, exit_code,
                not_handled=not_done).check()  # fmt: skip


@pytest.mark.soak
async def test_soak_random_sigkills_on_matrix(tmp_path: Path, synapse: SynapseServer) -> None:  # noqa: F811
    await soak(lambda tmp, **sizes: run_scenario(tmp, synapse, **sizes), tmp_path)
