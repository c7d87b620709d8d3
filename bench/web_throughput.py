"""Live throughput: messages posted through the web group's JSON API by many clients into many groups, against
a real bot process (``paibot run``, no model), and how far the memory lags behind.

    python bench/web_throughput.py [--messages 6000] [--clients 8] [--groups 50]

The bot runs as its own process on a fresh data directory; the clients (aiohttp, one connection each) post
``--messages`` short chat messages round-robin into ``--groups`` groups as fast as the bot acknowledges them
(a 200 means the message is on disk and in the bot's inbox). Printed: acknowledged messages per second, the
bot's CPU while they were posted, and the memory's lag, read from its transcript file (SQLite allows readers
beside the bot): records not yet in the transcript and records not yet in the vector index, sampled every
0.2 s, and the time from the last acknowledgement until everything was recorded and indexed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_counts(db: Path) -> tuple[int, int]:
    """(records, records waiting for the vector index) as the bot's transcript holds them now."""
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            n, pending = c.execute("SELECT count(*), coalesce(sum(indexed = 0), 0) FROM records").fetchone()
        return int(n), int(pending)
    except sqlite3.Error:
        return 0, 0


async def run(args: argparse.Namespace, data: Path) -> None:
    port = free_port()
    config = data / "config.yaml"
    config.write_text(
        f"bot: {{data_dir: '{data}', welcome: false}}\n"
        f"adapters: {{web: {{port: {port}, posts_per_s: 0, groups_per_client_per_hour: 0,"
        " members_per_client_per_hour: 0}}\n"
        "limits: {member_per_minute: 100000, group_per_minute: 100000, new_groups_per_hour: 100000}\n",
        encoding="utf-8",
    )
    # The bot's log goes to a file (--bot-log) or nowhere: a pipe nobody reads would stall it once full.
    log = open(args.bot_log or os.devnull, "w", encoding="utf-8")
    proc = subprocess.Popen([str(ROOT / ".venv/bin/paibot"), "run", "--config", str(config)], cwd=data,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{base}/api/info") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            keys = []  # members post with their member keys (Authorization: Member <key>)
            for m in range(7):
                async with http.post(f"{base}/api/members", json={"nickname": f"member{m}"}) as r:
                    assert r.status == 201, await r.text()
                    keys.append({"Authorization": f"Member {(await r.json())['key']}"})
            groups = []
            for g in range(args.groups):
                async with http.post(f"{base}/api/groups", json={"name": f"group {g}"}, headers=keys[0]) as r:
                    assert r.status == 201, await r.text()
                    groups.append((await r.json())["address"])  # what its paths use
        db = data / "memory.sqlite3"
        acked = 0
        samples: list[tuple[float, int, int, int]] = []  # (t, acknowledged, recorded, waiting for vectors)
        done_posting = asyncio.Event()

        async def client(i: int) -> None:
            nonlocal acked
            async with aiohttp.ClientSession() as http:
                for n in range(i, args.messages, args.clients):
                    group = groups[n % len(groups)]
                    body = {"text": f"message {n}: the plan for lunch is tacos at noon"}
                    url = f"{base}/api/groups/{group}/messages"
                    async with http.post(url, json=body, headers=keys[n % 7]) as r:
                        assert r.status in (200, 201), await r.text()
                    acked += 1

        async def sampler(t0: float) -> None:
            while True:
                n, pending = await asyncio.to_thread(memory_counts, db)
                samples.append((time.perf_counter() - t0, acked, n, pending))
                if done_posting.is_set() and n >= args.messages and pending == 0:
                    return
                await asyncio.sleep(0.2)

        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        watch = asyncio.create_task(sampler(t0), name="sampler")
        await asyncio.gather(*(client(i) for i in range(args.clients)))
        posted = time.perf_counter() - t0
        cpu_posting = cpu_seconds(proc.pid) - cpu0
        done_posting.set()
        await asyncio.wait_for(watch, timeout=600)
        drained = samples[-1][0]
        behind_record = max(a - n for _, a, n, _ in samples)
        behind_index = max(a - (n - p) for _, a, n, p in samples)
        print(f"{args.messages} messages, {args.clients} clients, {args.groups} groups")
        print(f"acknowledged: {args.messages / posted:.0f} msg/s ({posted:.1f} s); bot CPU while posting "
              f"{100 * cpu_posting / posted:.0f}% of one core, {1000 * cpu_posting / args.messages:.1f} ms a "
              "message")  # fmt: skip
        print(f"memory lag: at most {behind_record} acknowledged messages not yet recorded, {behind_index} not yet "
              f"indexed; all recorded and indexed {drained - posted:.1f} s after the last acknowledgement")  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=6000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--bot-log", default="", help="write the bot's log (stderr) to this file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
