"""A benchmark of real use: LoCoMo conversations replayed as live chat through the web group's JSON API, with
members asking Pai the questions, searching and summarising as they go; recall of evidence scored against the
same replay without any of that, in the same run.

    python bench/live_use.py PATH/locomo-dev.json [--model none|fake|both] [--conversations N]
                             [--search-every 50] [--summary-every 200]

For each model mode (``none``: no model, the memory answers; ``fake``: ``tests/fake_openai.py``, a local
OpenAI-compatible server, reached through litellm) and each replay, a fresh bot (the real ``App`` with the
web adapter on a loopback port, offline embedding, ``memory.recall_hits: 10``) gets one web group per
conversation, and the conversation's turns are posted in order through ``POST /api/groups/{address}/messages`` by
its two speakers (image captions appended as `` [shares image: ...]``, as ``bench/locomo.py`` does).

- ``clean``: the turns only.
- ``live``: after each session the speakers ask that session's questions (those whose latest evidence turn is
  in it, categories 1-5) as ``@Pai <question>``, each waiting for Pai's answer, which lands in the group as
  it would; every ``--search-every`` turns someone runs ``/search`` on words of the last turn, every
  ``--summary-every`` turns ``/summary``. The fake model answers a question with the first line of the
  memory it was given (so its answers quote the group, as a real model's do) and a summary with a decision
  and a to-do taken from the messages.

Scores, recall@10 of the evidence turns of every category 1-4 question:

- ``search``: ``paibot memory search --queries`` (the real CLI, on the stopped bot's data directory) after
  the replay; clean and live, same questions.
- ``recall block`` (fake model, live): the ``<recalled_from_group_memory>`` lines of the prompt the model
  received when the question was asked, mapped back to turns by their text; ``+ recent`` also counts the
  evidence among the recent messages the prompt carried.

Nothing is tuned here or per conversation: the memory runs with its defaults. Recall@10 is printed per
conversation, so the spread shows; ``bench/locomo.py`` reports how the defaults' tuning carries over to
conversations left out of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from locomo import CATEGORIES, evidence_ids  # noqa: E402

from tests.web_members import member_headers  # noqa: E402

from bot.app import App  # noqa: E402
from bot.config import parse_settings  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

_RECALLED = re.compile(r"<recalled_from_group_memory>\n(.*?)\n</recalled_from_group_memory>", re.S)
_RECENT = re.compile(r"<recent_group_messages>\n(.*?)\n</recent_group_messages>", re.S)
_LINE = re.compile(r"^\[[^\]]+\] ([^:(]+?)(?: \(replying to [^)]*\))?: (.*?)(?: \(link: [^)]*\))?$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str
    session: int


@dataclass
class Question:
    text: str
    category: int
    gold: set[str]
    session: int  # asked after this session (the latest one holding its evidence)
    asker: str
    block: list[str] = field(default_factory=list)  # dia ids of the recall block the model received
    recent: list[str] = field(default_factory=list)


def conversation(conv: dict[str, Any]) -> tuple[list[Turn], list[Question]]:
    c = conv["conversation"]
    sessions = sorted(int(k.split("_")[1]) for k in c if re.fullmatch(r"session_\d+", k))
    turns = [
        Turn(t["dia_id"], t["speaker"],
             t["text"] + (f" [shares image: {t['blip_caption']}]" if t.get("blip_caption") else ""), n)
        for n in sessions for t in c[f"session_{n}"]
    ]  # fmt: skip
    speakers = [c["speaker_a"], c["speaker_b"]]
    questions = []
    for i, qa in enumerate(conv["qa"]):
        gold = evidence_ids(qa.get("evidence", []))
        last = max((int(g[1:].split(":")[0]) for g in gold), default=sessions[-1])
        session = min([n for n in sessions if n >= last] or [sessions[-1]])
        questions.append(Question(qa["question"], qa.get("category", 0), gold, session, speakers[i % 2]))
    return turns, questions


class FakeModel:
    """The fake model's answers: the first recalled line for a question, a JSON summary for a summary."""

    def __init__(self) -> None:
        self.prompts: dict[str, str] = {}  # question text -> the user prompt the model received

    def __call__(self, body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if system.startswith("You summarise"):
            lines = [x.split(": ", 1)[-1] for x in user.splitlines() if x.startswith("[")]
            first = lines[0][:80] if lines else "nothing"
            return json.dumps({"summary": "They talked.", "decisions": [f"Keep in mind: {first}"],
                               "open_questions": [], "todos": [{"task": f"Follow up on {first[:40]}", "owner": "",
                                                                "due": ""}]})  # fmt: skip
        asked = user.rsplit(" is asking you: ", 1)[-1].strip()
        self.prompts[asked] = user
        recalled = _RECALLED.search(user)
        line = recalled.group(1).splitlines()[0] if recalled else ""
        m = _LINE.match(line)
        return f"From what I remember, {m.group(1)} said: {m.group(2)}" if m else "I don't know."


def cut_sessions(conv: dict[str, Any], n: int) -> dict[str, Any]:
    """The conversation's first ``n`` sessions and the questions whose evidence lies in them."""
    c = {k: v for k, v in conv["conversation"].items()
         if not (m := re.match(r"session_(\d+)", k)) or int(m.group(1)) <= n}  # fmt: skip
    keep = [qa for qa in conv["qa"] if evidence_ids(qa.get("evidence", []))
            and all(int(g[1:].split(":")[0]) <= n for g in evidence_ids(qa.get("evidence", [])))]  # fmt: skip
    return {**conv, "conversation": c, "qa": keep}


def lines_to_ids(block: str, by_text: dict[tuple[str, str], str]) -> list[str]:
    out = []
    for line in block.splitlines():
        m = _LINE.match(line)
        if m:
            key = (m.group(1).strip(), " ".join(m.group(2).split())[:200])
            if key in by_text:
                out.append(by_text[key])
    return out


async def replay(data: list[dict[str, Any]], mode: str, live: bool, args: argparse.Namespace,
                 tmp: Path) -> dict[str, Any]:  # fmt: skip
    """One bot, one replay of every conversation; returns per-conversation groups, id maps and questions."""
    port = free_port()
    fake = FakeModel()
    server = await FakeOpenAI().start() if mode == "fake" else None
    if server is not None:
        server.responder = fake
    llm = f"llm: {{model: 'openai/fake', api_base: '{server.base_url}', api_key: x, stream: false}}\n" if server else ""
    config = (f"bot: {{name: Pai, data_dir: '{tmp}', welcome: false}}\n{llm}"
              f"adapters: {{web: {{port: {port}, posts_per_s: 0, groups_per_client_per_hour: 0}}}}\n"
              "memory: {recall_hits: 10}\n"
              "limits: {member_per_minute: 100000, group_per_minute: 100000, daily_tokens_per_group: 0}\n"
              "triggers: {answer_within_minutes: 0}\n")  # fmt: skip
    (tmp / "config.yaml").write_text(config, encoding="utf-8")
    app = App(parse_settings(config))
    await app.start()
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"config": tmp / "config.yaml", "convs": {}}
    try:
        async with aiohttp.ClientSession() as http:
            for conv in data:
                turns, questions = conversation(conv)
                async with http.post(f"{base}/api/groups", json={"name": conv["sample_id"]}) as r:
                    made = await r.json()
                    number, address = made["number"], made["address"]
                ids: dict[str, str] = {}
                by_text: dict[tuple[str, str], str] = {}

                async def post(author: str, text: str) -> dict[str, Any]:
                    headers = await member_headers(http, author, base)  # each speaker posts with her member key
                    async with http.post(f"{base}/api/groups/{address}/messages", json={"text": text},
                                         headers=headers) as r:  # fmt: skip
                        assert r.status in (200, 201), await r.text()
                        return await r.json()

                async def ask(author: str, text: str) -> None:
                    """Post and wait for Pai's reply to it (it lands in the group like any message)."""
                    sent = await post(author, text)
                    for _ in range(3000):
                        async with http.get(f"{base}/api/groups/{address}/messages", params={"after": sent["id"]}) as r:
                            msgs = (await r.json())["messages"]
                        if any(m["is_bot"] and (m.get("reply_to") or {}).get("id") == sent["id"] for m in msgs):
                            return
                        await asyncio.sleep(0.02)

                by_session: dict[int, list[Question]] = defaultdict(list)
                for q in questions:
                    by_session[q.session].append(q)
                for n, turn in enumerate(turns):
                    sent = await post(turn.speaker, turn.text)
                    ids[str(sent["id"])] = turn.dia_id
                    by_text[(turn.speaker, " ".join(turn.text.split())[:200])] = turn.dia_id
                    if not live:
                        continue
                    if args.search_every and n % args.search_every == args.search_every - 1:
                        words = [w for w in re.findall(r"[A-Za-z]{4,}", turn.text)][:3]
                        if words:
                            await ask(turn.speaker, "/search " + " ".join(words))
                    if args.summary_every and n % args.summary_every == args.summary_every - 1:
                        await ask(turn.speaker, "/summary")
                    last_of_session = n + 1 == len(turns) or turns[n + 1].session != turn.session
                    if last_of_session:
                        for q in by_session.get(turn.session, []):
                            await ask(q.asker, f"@Pai {q.text}")
                            prompt = fake.prompts.get(q.text)
                            if prompt:
                                rec = _RECALLED.search(prompt)
                                recent = _RECENT.search(prompt)
                                q.block = lines_to_ids(rec.group(1), by_text) if rec else []
                                q.recent = lines_to_ids(recent.group(1), by_text) if recent else []
                out["convs"][conv["sample_id"]] = {"group": f"web:{number}", "ids": ids, "questions": questions}
            await app.drain(timeout=120)
    finally:
        await app.stop()
        if server is not None:
            await server.close()
    return out


def cli_search(config: Path, group: str, queries: list[str], ids: dict[str, str]) -> list[list[str]]:
    """``paibot memory search --queries`` on the stopped bot's data directory: dia ids of the top 10."""
    qfile = config.with_name(f"queries-{group.replace(':', '-')}.txt")
    qfile.write_text("\n".join(" ".join(q.split()) for q in queries) + "\n", encoding="utf-8")
    res = subprocess.run([str(ROOT / ".venv/bin/paibot"), "memory", "search", "--config", str(config), "--group", group,
                          "--queries", str(qfile), "--limit", "10"], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return [[ids.get(h["id"], "") for h in json.loads(line)] for line in res.stdout.splitlines() if line.strip()]


def recall(hits: list[str], gold: set[str], k: int = 10) -> float:
    return len(set(hits[:k]) & gold) / len(gold)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


async def run_mode(data: list[dict[str, Any]], mode: str, args: argparse.Namespace) -> None:
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    slots: dict[str, int] = defaultdict(int)
    timing = {}
    for variant in ("clean", "live"):
        with tempfile.TemporaryDirectory(prefix=f"live-{variant}-") as tmp:
            t0 = time.perf_counter()
            out = await replay(data, mode, variant == "live", args, Path(tmp))
            timing[variant] = time.perf_counter() - t0
            for conv_id, c in out["convs"].items():
                asked = [q for q in c["questions"] if q.category in CATEGORIES and q.gold]
                hits = await asyncio.to_thread(cli_search, out["config"], c["group"], [q.text for q in asked], c["ids"])
                for q, h in zip(asked, hits):
                    scores[f"search {variant}"][conv_id].append(recall(h, q.gold))
                    slots["hits"] += len(h)
                    slots["non-turn hits" if variant == "live" else "clean non-turn"] += sum(1 for x in h if not x)
                    if variant == "live" and mode == "fake":
                        scores["recall block"][conv_id].append(recall(q.block, q.gold))
                        scores["block + recent"][conv_id].append(len(set(q.block + q.recent) & q.gold) / len(q.gold))
    convs = sorted(next(iter(scores.values())))
    print(f"\nmodel: {mode}; replay {timing['clean']:.0f} s clean, {timing['live']:.0f} s live; recall@10 (categories 1-4)")
    names = list(scores)
    print(f"  {'':16}" + "".join(f"{n:>16}" for n in names))
    for c in convs:
        print(f"  {c:<16}" + "".join(f"{mean(scores[n][c]):>16.3f}" for n in names))
    allq = {n: [x for c in convs for x in scores[n][c]] for n in names}
    print(f"  {'all':<16}" + "".join(f"{mean(allq[n]):>16.3f}" for n in names))
    live, clean = mean(allq["search live"]), mean(allq["search clean"])
    print(f"  live - clean (search): {live - clean:+.3f}; top-10 slots the live search gave to anything but the"
          f" conversation's turns: {slots['non-turn hits'] / max(1, slots['hits'] / 2):.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path)
    ap.add_argument("--model", choices=("none", "fake", "both"), default="both")
    ap.add_argument("--conversations", type=int, default=0, help="only the first N conversations (0: all)")
    ap.add_argument("--search-every", type=int, default=50)
    ap.add_argument("--summary-every", type=int, default=200)
    ap.add_argument("--sessions", type=int, default=0, help="only the first N sessions of each (0: all; a quick look)")
    args = ap.parse_args(argv)
    data = json.loads(args.path.read_text(encoding="utf-8"))
    if args.conversations:
        data = data[: args.conversations]
    if args.sessions:
        data = [cut_sessions(conv, args.sessions) for conv in data]
    for mode in (("none", "fake") if args.model == "both" else (args.model,)):
        asyncio.run(run_mode(data, mode, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
