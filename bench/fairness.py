"""Fairness under hostile load: a quiet group's answer time while other groups hammer the bot, against the
same group's answer time with the bot idle, in one run.

    python bench/fairness.py [--noisy 40] [--backlog 4] [--answer-s 5] [--questions 10]
                             [--concurrent-groups N] [--quiet-slots N] [--typing-sockets 0]

A real bot process (``python -m bot run``, its web group on a free loopback port, offline memory) talks to
a fake OpenAI-compatible model in this process (``tests/fake_openai.py``) that takes ``--answer-s`` seconds
per answer. Everything goes over the web group's real HTTP API and WebSockets:

1. idle: the quiet group asks ``--questions`` questions, one after the other (each "@Pai ...?" posted, its
   answer seen on the group's WebSocket);
2. load: ``--noisy`` other groups each keep ``--backlog`` questions waiting at all times (from different
   members, so the per-member limits do not refuse them; the per-group limits are raised so that nothing is
   refused: every noisy question costs a model call). Once every noisy group has had its first answer the
   quiet group asks its questions again, each after a random pause of up to one answer's time.
   With ``--typing-sockets N`` one noisy group also holds N WebSockets, one of which sends ``typing`` as
   fast as the server takes it (the web group's limit on what a client's sockets send applies; its other
   per-client limits are off, the bench being one client for every group).

Printed: the quiet group's answer times (p50, p95, max) idle and under load, the ratio of the p95s (target
<= 1.5), and how many noisy answers were given meanwhile. Timings are wall clock on a shared machine: the
ratio is what to compare, both halves being measured minutes apart in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_openai import Behaviour, FakeOpenAI  # noqa: E402
from tests.web_members import member_headers  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(data: Path, port: int, api_base: str, args: argparse.Namespace) -> str:
    limits = {
        "member_per_minute": 1000, "group_per_minute": 1000, "daily_tokens_per_group": 0,
        "daily_tokens_per_member": 0, "daily_tokens": 0, "daily_cost_usd": 0, "new_groups_per_hour": 10_000,
    }
    if args.concurrent_groups:
        limits["concurrent_groups"] = args.concurrent_groups
    if args.quiet_slots is not None:
        limits["quiet_group_slots"] = args.quiet_slots
    known = _limit_keys()
    limits_yaml = ", ".join(f"{k}: {v}" for k, v in limits.items() if k in known)
    # the bench is one client making many groups, posts and sockets: the web group's per-client limits are
    # off, except on what its sockets send (so --typing-sockets meets the limit a hostile client meets)
    web = {"enabled": "true", "host": "127.0.0.1", "port": port}
    web |= {k: 0 for k in _web_limit_keys() - {"socket_messages_per_s"}}
    web_yaml = ", ".join(f"{k}: {v}" for k, v in web.items())
    return f"""
bot: {{name: Pai, data_dir: "{data}", welcome: false}}
llm: {{model: openai/bench, api_base: "{api_base}", api_key: bench, stream: false, max_retries: 0, timeout_s: 120}}
memory: {{embedding: offline}}
limits: {{{limits_yaml}}}
adapters:
  web: {{{web_yaml}}}
log_level: WARNING
"""


def _web_limit_keys() -> set[str]:
    try:
        from adapters.web.config import _LIMITS
    except ImportError:  # before the web group had per-client limits
        return set()
    return set(_LIMITS)


def _limit_keys() -> set[str]:
    import dataclasses

    from bot.config import LimitSettings

    return {f.name for f in dataclasses.fields(LimitSettings)}


class Group:
    """One web group seen by the bench: posts questions and learns of the bot's answers on a socket."""

    def __init__(self, http: aiohttp.ClientSession, base: str, address: str) -> None:
        self.http = http
        self.base = base
        self.address = address  # the group's address: what its paths use
        self.answered: dict[int, float] = {}
        self.server_s: dict[int, float] = {}  # question id -> reply stored minus question stored (server clock)
        self.sent_at: dict[int, str] = {}
        self.acks: list[float] = []  # how long each POST took to be acknowledged
        self.changed = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(f"{self.base}/api/groups/{self.address}/ws")
        self._reader = asyncio.create_task(self._read(), name=f"ws:{self.address}")

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            message = data.get("message") or {}
            if data.get("type") == "message" and message.get("is_bot") and message.get("reply_to"):
                qid = int(message["reply_to"]["id"])
                self.answered.setdefault(qid, time.monotonic())
                if qid in self.sent_at:
                    asked = datetime.fromisoformat(self.sent_at[qid])
                    self.server_s[qid] = (datetime.fromisoformat(message["sent_at"]) - asked).total_seconds()
                self.changed.set()

    async def ask(self, text: str, author: str) -> int:
        t0 = time.monotonic()
        headers = await member_headers(self.http, author, self.base)  # each author a member, made once
        async with self.http.post(
            f"{self.base}/api/groups/{self.address}/messages", json={"text": text}, headers=headers
        ) as resp:
            resp.raise_for_status()
            posted = await resp.json()
            mid = int(posted["id"])
            self.sent_at[mid] = posted["sent_at"]
        self.acks.append(time.monotonic() - t0)
        return mid

    async def answer_time(self, text: str, author: str = "Quinn") -> float:
        t0 = time.monotonic()
        mid = await self.ask(text, author)
        self.last = mid
        while mid not in self.answered:
            self.changed.clear()
            await self.changed.wait()
        return self.answered[mid] - t0

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


async def create_group(http: aiohttp.ClientSession, base: str, name: str) -> Group:
    async with http.post(f"{base}/api/groups", json={"name": name}) as resp:
        resp.raise_for_status()
        data = await resp.json()
    group = Group(http, base, str(data["address"]))
    await group.open()
    return group


async def hammer(group: Group, backlog: int, stop: asyncio.Event, counter: list[int], first: asyncio.Event,
                 index: int) -> None:
    """Keep ``backlog`` questions of this group waiting until ``stop``."""
    authors = itertools.cycle([f"noisy{index}-{k}" for k in range(8)])
    waiting: set[int] = set()
    n = 0
    while not stop.is_set():
        while len(waiting) < backlog:
            n += 1
            waiting.add(await group.ask(f"@Pai noisy question {n} from group {index}?", next(authors)))
        done = {m for m in waiting if m in group.answered}
        if done:
            counter[0] += len(done)
            waiting -= done
            first.set()
            continue
        group.changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(group.changed.wait(), 1.0)


async def typing_spam(http: aiohttp.ClientSession, base: str, address: str, sockets: int,
                      stop: asyncio.Event, sent: list[int]) -> None:
    """Hold ``sockets`` WebSockets on one group; one of them sends typing as fast as it can (as a member:
    the group shows only members typing)."""
    opened: list[aiohttp.ClientWebSocketResponse] = []
    refused = 0
    mallory = await member_headers(http, "Mallory", base)
    for _ in range(sockets):
        try:
            opened.append(await http.ws_connect(f"{base}/api/groups/{address}/ws", headers=mallory))
        except aiohttp.WSServerHandshakeError:
            refused += 1
    sent.append(refused)
    sent.append(0)  # reconnects after the server hung up on the flood
    try:
        spammer = opened[0] if opened else None
        while spammer is not None and not stop.is_set():
            try:
                if spammer.closed:
                    raise ConnectionResetError
                await spammer.send_json({"type": "typing", "name": "Mallory"})
                sent[0] += 1
            except ConnectionResetError:  # hung up on: come back, as a hostile client would
                with contextlib.suppress(aiohttp.ClientError):
                    spammer = await http.ws_connect(f"{base}/api/groups/{address}/ws", headers=mallory)
                    opened.append(spammer)
                    sent[2] += 1
            await asyncio.sleep(0)
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)


async def scrape(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as resp:
        return await resp.text()


def lane_waits(before: str, after: str) -> dict[str, tuple[float, float, float]]:
    """Events, p50 and p95 of the bot's lane waits between two scrapes, per kind of lane."""
    from bot.app.status import parse, quantile

    b, a = parse(before), parse(after)
    delta: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name in ("paibot_lane_wait_seconds_bucket", "paibot_lane_wait_seconds_count"):
        old = {tuple(sorted(labels.items())): v for labels, v in b.get(name, [])}
        delta[name] = [(labels, v - old.get(tuple(sorted(labels.items())), 0.0)) for labels, v in a.get(name, [])]
    out = {}
    for lane in ("quiet", "backlog"):
        n = sum(v for labels, v in delta["paibot_lane_wait_seconds_count"] if labels.get("lane") == lane)
        p50 = quantile(delta, "paibot_lane_wait_seconds", 0.5, lane=lane)
        p95 = quantile(delta, "paibot_lane_wait_seconds", 0.95, lane=lane)
        if p50 is not None and p95 is not None:
            out[lane] = (n, p50, p95)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(times: list[float]) -> tuple[float, float, float]:
    q = sorted(times)
    p95 = q[min(len(q) - 1, max(0, round(0.95 * len(q)) - 1))]
    return statistics.median(q), p95, q[-1]


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    async with FakeOpenAI(Behaviour(text="ok, noted", delay_s=args.answer_s)) as fake:
        with tempfile.TemporaryDirectory(prefix="paibot-fairness-") as tmp:
            port = free_port()
            cfg = Path(tmp) / "config.yaml"
            cfg.write_text(config(Path(tmp) / "data", port, fake.base_url, args), encoding="utf-8")
            cfg.chmod(0o600)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(cfg), cwd=str(ROOT),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            base = f"http://127.0.0.1:{port}"
            try:
                # no cap on connections: a socket holds one, and --typing-sockets opens hundreds
                connector = aiohttp.TCPConnector(limit=0)
                timeout = aiohttp.ClientTimeout(total=None)
                async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                    await wait_up(http, base, proc)
                    await measure(http, base, args, rng, proc.pid)
            finally:
                proc.terminate()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), 30)
                if proc.returncode is None:
                    proc.kill()


async def wait_up(http: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise SystemExit(f"the bot exited with {proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/api/info") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise SystemExit("the bot did not come up within 120 s")


async def measure(http: aiohttp.ClientSession, base: str, args: argparse.Namespace, rng: random.Random,
                  pid: int) -> None:
    quiet = await create_group(http, base, "quiet")
    noisy = [await create_group(http, base, f"noisy {i}") for i in range(args.noisy)]
    await quiet.answer_time("@Pai warming up?")  # the first answer also loads the model client
    cpu0 = cpu_seconds(pid)
    quiet.acks.clear()
    idle = [await quiet.answer_time(f"@Pai idle question {i}?") for i in range(args.questions)]
    idle_acks = list(quiet.acks)
    cpu_idle = (cpu_seconds(pid) - cpu0) / len(idle)
    cpu0 = cpu_seconds(pid)
    metrics0 = await scrape(http, base)
    stop, first_all = asyncio.Event(), []
    counter = [0]
    firsts = [asyncio.Event() for _ in noisy]
    tasks = [asyncio.create_task(hammer(g, args.backlog, stop, counter, firsts[i], i)) for i, g in enumerate(noisy)]
    typing_sent: list[int] = [0]
    if args.typing_sockets:
        tasks.append(asyncio.create_task(
            typing_spam(http, base, noisy[0].address if noisy else quiet.address, args.typing_sockets, stop,
                        typing_sent)))
    t_load = time.monotonic()
    await asyncio.gather(*(e.wait() for e in firsts))
    first_all.append(time.monotonic() - t_load)
    loaded, server = [], []
    quiet.acks.clear()
    for i in range(args.questions):
        await asyncio.sleep(rng.uniform(0, args.answer_s))
        loaded.append(await quiet.answer_time(f"@Pai loaded question {i}?"))
        server.append(quiet.server_s.get(quiet.last, float("nan")))
    stop.set()
    _, late = await asyncio.wait(tasks, timeout=15)  # each ends after its current request
    for t in late:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for g in [quiet, *noisy]:
        await g.close()
    load_s = time.monotonic() - t_load
    cpu_load = cpu_seconds(pid) - cpu0
    report(args, idle, loaded, counter[0], load_s, first_all[0], typing_sent)
    print("quiet answers under load, seen by the client: " + " ".join(f"{t:.2f}" for t in loaded))
    print("                 stored by the bot (server): " + " ".join(f"{t:.2f}" for t in server))
    a_idle, a_load = summary(idle_acks), summary(quiet.acks)
    print(f"quiet POST acknowledged: idle p50 {a_idle[0] * 1000:.0f} ms p95 {a_idle[1] * 1000:.0f} ms; "
          f"load p50 {a_load[0] * 1000:.0f} ms p95 {a_load[1] * 1000:.0f} ms")
    waits = lane_waits(metrics0, await scrape(http, base))
    print("lane waits in the bot during the load phase (its metrics): " + "; ".join(
        f"{lane} events {n:.0f}, p50 {p50:.2f} s, p95 {p95:.2f} s" for lane, (n, p50, p95) in waits.items()))
    print(f"bot CPU: {cpu_idle * 1000:.0f} ms per answer idle; under load {cpu_load:.1f} s in {load_s:.0f} s "
          f"({100 * cpu_load / load_s:.0f}% of one core), {1000 * cpu_load / max(1, counter[0] + len(loaded)):.0f} "
          f"ms per answer; machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def report(args: argparse.Namespace, idle: list[float], loaded: list[float], noisy_answers: int,
           load_s: float, first_round_s: float, typing_sent: list[int]) -> None:
    i50, i95, imax = summary(idle)
    l50, l95, lmax = summary(loaded)
    print(f"model answer time {args.answer_s:.1f} s; {args.noisy} noisy groups keeping {args.backlog} questions "
          f"waiting each; {args.questions} quiet questions per phase")
    print(f"idle : p50 {i50:6.2f} s  p95 {i95:6.2f} s  max {imax:6.2f} s")
    print(f"load : p50 {l50:6.2f} s  p95 {l95:6.2f} s  max {lmax:6.2f} s")
    print(f"ratio p95 load / idle: {l95 / i95:.2f}  (p50 {l50 / i50:.2f})")
    print(f"noisy answers during the load phase: {noisy_answers} in {load_s:.0f} s "
          f"({noisy_answers / load_s:.1f}/s); every noisy group had its first answer after {first_round_s:.1f} s")
    if args.typing_sockets:
        refused = typing_sent[1] if len(typing_sent) > 1 else 0
        again = typing_sent[2] if len(typing_sent) > 2 else 0
        print(f"typing spam: {args.typing_sockets} sockets asked, {refused} refused; {typing_sent[0]} typing "
              f"messages sent ({typing_sent[0] / load_s:.0f}/s); {again} reconnects after the server hung up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noisy", type=int, default=40)
    ap.add_argument("--backlog", type=int, default=4)
    ap.add_argument("--answer-s", type=float, default=5.0)
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--concurrent-groups", type=int, default=0, help="limits.concurrent_groups (default: the bot's)")
    ap.add_argument("--quiet-slots", type=int, default=None, help="limits.quiet_group_slots (default: the bot's)")
    ap.add_argument("--typing-sockets", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
