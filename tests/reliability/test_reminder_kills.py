"""Reminders fire exactly once across random SIGKILLs, also when they came due while the bot was down.

Members of a web group (the web adapter's sends are idempotent, so an interrupted firing may be resent
safely) set reminders with ``/remind in 0.3m ...`` (fractional minutes: the parser has no seconds unit),
due spread over a short window. The bot process is SIGKILLed at seeded random moments while the commands
are handled and while the reminders come due; one of the downtimes is long and starts just before a
reminder's due time, so at least one comes due while the bot is down and must fire once on restart. After
the last due time every reminder's text is in the group's message list exactly once, its store row is
``fired`` with one ``sent`` firing, and the "(late: was due ...)" mark is right: a firing is marked late
only if it was more than ``LATE_AFTER`` behind its due time, and one that came due during a downtime longer
than that is marked (the quick run's downtimes are shorter than ``LATE_AFTER``; the soak run's long downtime
is not). The seed is printed (``PAIBOT_SOAK_SEED`` replays it).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from bot.skills.reminder_store import LATE_AFTER
from tests.reliability.harness import (
    BotProcess,
    env_int,
    figure,
    free_port,
    read_db,
    run_seed,
    wait_for,
    web_only,
    web_ready,
    write_config,
)
from tests.web_members import member_headers

pytestmark = pytest.mark.slow

SLACK_S = 5.0  # the bot decides "late" a moment before the web store stamps the message


def stored_reminders(data: Path) -> dict[str, tuple[float, str]]:
    """reminder text -> (due timestamp, status), read while the bot may be running."""
    db = data / "skills.sqlite3"
    if not db.exists():
        return {}
    try:
        with read_db(db) as conn:
            return {t: (d, s) for t, d, s in conn.execute("SELECT text, due_ts, status FROM reminders")}
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}


def stored_firings(data: Path) -> list[tuple[str, str, int]]:
    """(reminder text, firing state, late) for every firing."""
    with read_db(data / "skills.sqlite3") as conn:
        return conn.execute(
            "SELECT r.text, f.state, f.late FROM reminder_firings f JOIN reminders r ON r.id = f.reminder_id"
        ).fetchall()


async def list_all(http: aiohttp.ClientSession, base: str, group: str) -> list[dict]:
    out: list[dict] = []
    after = 0
    while True:
        async with http.get(
            f"{base}/api/groups/{group}/messages", params={"after": after, "limit": 500}
        ) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        out.extend(page["messages"])
        if not page["messages"] or not page["has_more"]:
            return out
        after = page["messages"][-1]["id"]


async def post_until_acked(http: aiohttp.ClientSession, base: str, group: str, body: dict,
                           headers: dict[str, str]) -> None:  # fmt: skip
    """Post like the page does: retry with the same nonce until the bot's inbox has it (a 200)."""
    delay = 0.05
    while True:
        try:
            async with http.post(f"{base}/api/groups/{group}/messages", json=body, headers=headers) as resp:
                if resp.status == 200:
                    return
                assert resp.status in (502, 503), f"unexpected {resp.status}: {await resp.text()}"
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


async def run_scenario(
    tmp_path: Path, *, reminders: int, kills: int, min_delay_m: float, max_delay_m: float, long_down_s: float,
    seed: int,
) -> None:  # fmt: skip
    rng = random.Random(seed)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    bot = BotProcess(write_config(tmp_path, web_only(port)), tmp_path / "logs")
    started = time.monotonic()
    down: list[tuple[float, float]] = []  # (killed at, answering again at), wall clock
    texts = [f"water the plants rq{i:03d}" for i in range(reminders)]
    delays = sorted(round(rng.uniform(min_delay_m, max_delay_m), 2) for _ in range(reminders))
    exit_code = None

    async def kill_and_restart(downtime: float) -> None:
        killed_at = time.time()
        await bot.kill()
        await asyncio.sleep(downtime)
        await bot.spawn()
        await wait_for(lambda: web_ready(http, base), 90)
        down.append((killed_at, time.time()))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            await bot.spawn()
            await wait_for(lambda: web_ready(http, base), 90)
            async with http.post(f"{base}/api/groups", json={"name": "reminder crash group"}) as resp:
                assert resp.status == 201, await resp.text()
                group = (await resp.json())["address"]
            members = [await member_headers(http, f"member{i}", base) for i in range(4)]

            async def scenario() -> None:
                # The first kill lands while the commands are being handled (some acknowledged, not handled).
                first_kill_after = rng.randrange(1, reminders)
                for i, (text, delay) in enumerate(zip(texts, delays, strict=True)):
                    body = {"text": f"/remind in {delay}m {text}", "nonce": f"r{i}"}
                    await post_until_acked(http, base, group, body, members[i % 4])
                    if i == first_kill_after:
                        await asyncio.sleep(rng.uniform(0.0, 0.2))
                        await kill_and_restart(rng.uniform(0.0, 1.5))

                async def all_created() -> bool:
                    return len(await asyncio.to_thread(stored_reminders, data)) == reminders

                await wait_for(all_created, 60)
                dues = sorted(d for d, _ in (await asyncio.to_thread(stored_reminders, data)).values())
                # The other kills at random moments while reminders come due; the long one just before one.
                now = time.time()
                moments = sorted(rng.uniform(now, dues[-1]) for _ in range(kills - 2))
                long_at = max(now, rng.choice(dues) - rng.uniform(0.5, 2.0))
                plan = sorted([(m, False) for m in moments] + [(long_at, True)])
                for moment, long in plan:
                    await asyncio.sleep(max(0.0, moment - time.time()))
                    await kill_and_restart(long_down_s if long else rng.uniform(0.0, 2.0))

                # Every reminder fired (status 'fired'), and a moment more for a duplicate to show up.
                async def all_fired() -> bool:
                    rows = await asyncio.to_thread(stored_reminders, data)
                    return all(s == "fired" for _, s in rows.values())

                await wait_for(all_fired, max(0.0, dues[-1] - time.time()) + 60, every=0.5)
                await asyncio.sleep(2.5)

            try:
                await bot.guard(scenario(), 120 + max_delay_m * 60 + long_down_s + kills * 20)
            except TimeoutError:
                pytest.fail("the reminders did not all fire\n" + bot.log_tail())
            listed = await list_all(http, base, group)
        finally:
            if bot.alive:
                exit_code = await bot.terminate()

    store = stored_reminders(data)
    firings = stored_firings(data)
    fired_msgs = [m for m in listed if m["is_bot"] and m["text"].startswith("⏰ Reminder for")]
    per_text: dict[str, list[dict]] = {t: [m for m in fired_msgs if t in m["text"]] for t in texts}
    missing = [t for t, ms in per_text.items() if not ms]
    doubled = sum(len(ms) - 1 for ms in per_text.values() if len(ms) > 1)
    unknown = [m["text"] for m in fired_msgs if not any(t in m["text"] for t in texts)]
    firing_states = Counter(state for _, state, _ in firings)
    firings_per_text = Counter(t for t, _, _ in firings)
    due_while_down, late_marked, wrongly_late, late_unmarked = 0, 0, [], []
    for t, ms in per_text.items():
        if len(ms) != 1 or t not in store:
            continue
        due, fired_at = store[t][0], datetime.fromisoformat(ms[0]["sent_at"]).timestamp()
        marked = "(late: was due" in ms[0]["text"]
        late_marked += marked
        behind = fired_at - due
        window = next(((k, r) for k, r in down if k <= due < r), None)
        due_while_down += window is not None
        if marked and behind < LATE_AFTER.total_seconds() - SLACK_S:
            wrongly_late.append((t, round(behind)))
        # Due while down and still down LATE_AFTER later: the firing at restart is a late one.
        if not marked and window is not None and window[1] - due > LATE_AFTER.total_seconds() + SLACK_S:
            late_unmarked.append((t, round(behind)))
    line = figure(
        "reminder kill", seed=seed, reminders=reminders, kills=bot.kills, restarts=bot.runs - 1,
        created=len(store), fired=len(per_text) - len(missing), missing=len(missing), duplicated=doubled,
        due_while_down=due_while_down, late_marked=late_marked, wrongly_late=len(wrongly_late),
        late_unmarked=len(late_unmarked), longest_downtime_s=round(max(r - k for k, r in down)),
        firing_states=dict(firing_states), sigterm_exit=exit_code, seconds=round(time.monotonic() - started),
    )  # fmt: skip
    assert bot.kills == kills, line
    assert len(store) == reminders and set(store) == set(texts), line  # each command made one reminder
    assert missing == [] and doubled == 0 and unknown == [], line + "\n" + bot.log_tail()
    assert all(s == "fired" for _, s in store.values()), line
    assert firing_states == Counter({"sent": reminders}) and max(firings_per_text.values()) == 1, line
    assert due_while_down >= 1, line  # the long downtime began just before a due time
    assert wrongly_late == [] and late_unmarked == [], f"{line}\n{wrongly_late} {late_unmarked}"
    assert exit_code == 0, line + "\n" + bot.log_tail()


async def test_reminders_fire_exactly_once_across_random_sigkills(tmp_path: Path) -> None:
    await run_scenario(
        tmp_path, reminders=6, kills=3, min_delay_m=0.2, max_delay_m=0.5, long_down_s=10.0, seed=run_seed()
    )  # fmt: skip


@pytest.mark.soak
async def test_soak_reminders_fire_exactly_once_across_random_sigkills(tmp_path: Path) -> None:
    """50 kills over a few minutes of due times, one downtime longer than LATE_AFTER: late firings marked."""
    await run_scenario(
        tmp_path,
        reminders=env_int("PAIBOT_SOAK_REMINDERS", 40),
        kills=env_int("PAIBOT_SOAK_REMINDER_KILLS", 50),
        min_delay_m=0.2,
        max_delay_m=env_int("PAIBOT_SOAK_REMINDER_MINUTES", 8),
        long_down_s=LATE_AFTER.total_seconds() + 15,
        seed=run_seed(),
    )
