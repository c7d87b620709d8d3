"""Shared pieces of the reliability suite: the bot as a real process, its config, read-only views of its
databases, and the figures each test prints.

The bot under test is always ``python -m bot run --config <tmp config>``, started and killed like an
operator's service manager would: SIGKILL for crashes, SIGTERM for a graceful stop. Its stores are read
only through separate read-only SQLite connections (WAL lets a reader look while the bot writes) or, after
it stopped, through the ``paibot memory`` CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]

# Rate limits out of the way: these tests are about delivery, not about the flood controls.
NO_LIMITS = "limits: {member_per_minute: 100000, group_per_minute: 100000, daily_tokens_per_group: 1000000000}\n"


def env_int(name: str, default: int) -> int:
    """A scale knob for the soak run (``make soak`` sets them); the quick run uses the defaults."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def run_seed() -> int:
    """The seed of a run: ``PAIBOT_SOAK_SEED`` to replay one, else a fresh one (each scenario prints it)."""
    return env_int("PAIBOT_SOAK_SEED", 0) or random.SystemRandom().randrange(1, 10**6)


Scenario = Callable[..., Awaitable[None]]  # run_scenario(tmp_path, *, messages, groups, kills, seed)


async def soak(run_scenario: Scenario, tmp_path: Path) -> None:
    """A kill scenario at the soak scale (``make soak``: 10,000 messages into 50 groups, 20 kills, unless
    ``PAIBOT_SOAK_MESSAGES`` / ``_GROUPS`` / ``_KILLS`` say otherwise)."""
    await run_scenario(
        tmp_path,
        messages=env_int("PAIBOT_SOAK_MESSAGES", 10_000),
        groups=env_int("PAIBOT_SOAK_GROUPS", 50),
        kills=env_int("PAIBOT_SOAK_KILLS", 20),
        seed=run_seed(),
    )


@dataclass
class KillOutcome:
    """What a SIGKILL scenario found, and the one verdict every platform's scenario shares: every kill
    happened; no acknowledged message lost, left unhandled or unexpected in the inbox; no reply doubled or
    sent to a message that did not ask; at most ``allowed_unanswered`` mentions unanswered, each of them a
    reply the bot logged as interrupted (``explained``); nothing posted but the replies; a clean SIGTERM exit.
    ``line`` is the printed figures, ``log`` the bot's log tail, both shown when a check fails."""

    line: str
    log: str
    kills: int
    kills_asked: int
    lost: Sequence[object]
    duplicated: int
    stray: Sequence[object]
    unanswered: Sequence[object]
    exit_code: int | None
    not_handled: Sequence[object] = ()
    stray_inbox: Sequence[object] = ()
    allowed_unanswered: int = 0
    unexplained: Sequence[object] | None = None  # None: every unanswered mention counts as unexplained
    posted: int | None = None  # everything the bot posted, when the fake platform can tell
    replies: int | None = None

    def check(self) -> None:
        why = self.line + "\n" + self.log
        assert self.kills == self.kills_asked, self.line
        assert list(self.lost) == [] and list(self.not_handled) == [] and list(self.stray_inbox) == [], why
        assert self.duplicated == 0 and list(self.stray) == [], why
        # At most once: only a reply in flight at a kill may be missing (one per chat being handled at that
        # moment), and the bot said so in its log; every other mention was answered.
        unexplained = self.unanswered if self.unexplained is None else self.unexplained
        assert list(unexplained) == [] and len(self.unanswered) <= self.allowed_unanswered, why
        if self.posted is not None:
            assert self.posted == self.replies, self.line  # nothing but the replies was posted
        assert self.exit_code == 0, why


PARALLEL_CHATS = 8  # bot.runtime's default: chats handled at once, so replies in flight at one kill


def check_at_most_once(
    name: str, *, bot: BotProcess, kills: int, groups: int, seed: int, started: float, exit_code: int | None,
    interrupted: re.Pattern[str], acknowledged: int, mentions: set[Any], event_of: Callable[[Any], str],
    replies: Counter[Any], attempted: set[Any], lost: Sequence[object], not_handled: Sequence[object],
    stray_inbox: Sequence[object], status: dict[str, str], posted: int, never_sent: str, **more: Any,
) -> None:
    """Score a kill scenario on a platform whose sends are not idempotent (Telegram, QQ), print its figures
    and check them (``KillOutcome``): a reply cut by a kill is not repeated, so a mention may go unanswered,
    but only when the bot logged that reply as interrupted (``interrupted`` finds the event ids it names),
    and at most one per chat being handled at each kill. ``mentions`` and the keys of ``replies`` and
    ``attempted`` (sends that reached the platform at all) name messages the same way; ``event_of`` gives
    a mention's event id. ``more`` adds figures after ``acknowledged``; ``never_sent`` names the figure of
    unanswered mentions whose reply never left the bot (a kill while it waited for a send slot)."""
    duplicated = sum(n - 1 for n in replies.values() if n > 1)
    unanswered = [m for m in mentions if replies.get(m, 0) == 0]
    uncertain = set(interrupted.findall(bot.log_text()))
    unexplained = [m for m in unanswered if event_of(m) not in uncertain]
    allowed = bot.kills * min(groups, PARALLEL_CHATS)
    stray = [m for m in replies if m not in mentions]
    line = figure(
        name, seed=seed, kills=bot.kills, restarts=bot.runs - 1, acknowledged=acknowledged, **more,
        lost=len(lost), not_handled=len(not_handled), mentions=len(mentions), replies=sum(replies.values()),
        duplicated_replies=duplicated, unanswered=len(unanswered), unanswered_unexplained=len(unexplained),
        **{never_sent: len([m for m in unanswered if m not in attempted])}, unanswered_allowed=allowed,
        dead_letters=sum(1 for s in status.values() if s == "dead"), sigterm_exit=exit_code,
        seconds=round(time.monotonic() - started),
    )  # fmt: skip
    KillOutcome(
        line, bot.log_tail(), bot.kills, kills, lost, duplicated, stray, unanswered, exit_code,
        not_handled=not_handled, stray_inbox=stray_inbox, allowed_unanswered=allowed, unexplained=unexplained,
        posted=posted, replies=sum(replies.values()),
    ).check()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def figure(name: str, **values: Any) -> str:
    """Print one test's figures on one line (visible with ``pytest -s``) and return it for assertion
    messages."""
    line = f"[reliability] {name}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in values.items())
    print(line, flush=True)
    return line


def write_config(tmp_path: Path, body: str) -> Path:
    """A config file with the data directory under ``tmp_path``; ``body`` adds adapters, llm, limits..."""
    cfg = tmp_path / "config.yaml"
    data = tmp_path / "data"
    cfg.write_text(
        f"bot: {{name: Pai, data_dir: '{data}', welcome: false}}\n" + NO_LIMITS + body, encoding="utf-8"
    )
    cfg.chmod(0o600)
    return cfg


# The harness is one client posting for many members and groups: the web group's per-client limits are off
# (tests/test_web_hostile.py tests them).
WEB_UNLIMITED = (
    "sockets_per_client: 0, socket_opens_per_client_per_minute: 0, socket_messages_per_s: 0, posts_per_s: 0, "
    "groups_per_client_per_hour: 0, members_per_client_per_hour: 0, missed_lookups_per_client_per_hour: 0, "
    "group_storage_mb: 0, storage_mb: 0"
)


def web_only(port: int, extra: str = "") -> str:
    return f"adapters:\n  web: {{enabled: true, host: 127.0.0.1, port: {port}, {WEB_UNLIMITED}}}\n" + extra


class BotProcess:
    """``python -m bot run`` as a child process; every run's output goes to ``logs/run<N>.log``."""

    def __init__(self, config: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0
        self.kills = 0
        self.exit_codes: list[int] = []
        self._ending = False  # set while we kill or stop it: any other exit is a crash of the bot

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def spawn(self) -> None:
        self.runs += 1
        with open(self.logs / f"run{self.runs}.log", "wb") as log:  # noqa: ASYNC230 - a local log file, instant
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(self.config),
                env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        self._ending = False  # only now: until the new process exists, the old one's death is expected

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, like a power cut of the process."""
        assert self.proc is not None
        self._ending = True
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        self.exit_codes.append(await self.proc.wait())

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; a process that does not exit in ``timeout`` is killed and reported as -9."""
        assert self.proc is not None
        self._ending = True
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                return -9
        code = self.proc.returncode
        assert code is not None
        self.exit_codes.append(code)
        return code

    async def watchdog(self) -> None:
        """Returns (raising) as soon as the bot exits without having been killed or stopped by the test."""
        while True:
            proc = self.proc
            if proc is not None and proc.returncode is not None and not self._ending:
                raise AssertionError(f"the bot exited by itself (code {proc.returncode})\n" + self.log_tail())
            await asyncio.sleep(0.2)

    async def guard(self, work: Awaitable[Any], timeout: float) -> Any:
        """Run ``work`` (with a timeout) but fail at once if the bot process crashes meanwhile."""
        dog = asyncio.create_task(self.watchdog(), name="bot-watchdog")
        job = asyncio.ensure_future(asyncio.wait_for(work, timeout))
        try:
            done, _ = await asyncio.wait({dog, job}, return_when=asyncio.FIRST_COMPLETED)
            if dog in done:
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)
                dog.result()
            return job.result()
        finally:
            dog.cancel()
            await asyncio.gather(dog, return_exceptions=True)

    def log_text(self) -> str:
        return "\n".join(
            (self.logs / f"run{i}.log").read_text(errors="replace") for i in range(1, self.runs + 1)
        )

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- run{i}\n" + (self.logs / f"run{i}.log").read_text(errors="replace")[-chars:]
            for i in range(max(1, self.runs - 2), self.runs + 1)
        )


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.2) -> None:
    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(every)

    await asyncio.wait_for(loop(), timeout)


async def web_ready(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(f"{base}/api/info") as resp:
            return resp.status == 200
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


# --------------------------------------------------------------------------- views of the stores


@contextlib.contextmanager
def read_db(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for reading one of the bot's databases from a test, while the bot runs or after it was
    killed; closed on exit.

    It is opened read-write (``mode=rw``: never creating the file) although it only reads. A read-only
    connection cannot run SQLite's WAL recovery: after a SIGKILL in the middle of a commit (the
    transaction's frames already in the WAL, the wal-index header not yet updated), a read-only reader trusts
    the stale header and misses that transaction, while the next read-write opener (the restarted bot)
    recovers it from the WAL. A test reading that way counted a record as absent that the bot had: the memory
    index then held one vector more than the test's view of the transcript."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def inbox_status(data: Path) -> dict[str, str]:
    """event id -> inbox status (pending | done | dead), read while the bot may be running."""
    db = data / "paibot.db"
    if not db.exists():
        return {}
    try:
        with read_db(db) as conn:
            return dict(conn.execute("SELECT event_id, status FROM inbox").fetchall())
    except sqlite3.OperationalError:  # the bot is still creating its schema
        return {}


def dead_letters(data: Path) -> list[tuple[str, int, str]]:
    with read_db(data / "paibot.db") as conn:
        return conn.execute("SELECT event_id, attempts, last_error FROM inbox WHERE status='dead'").fetchall()


def transcript_ids(data: Path, chat_keys: Iterable[str] | None = None) -> dict[str, set[str]]:
    """chat key -> ids of the records in the memory transcript (the source of truth)."""
    out: dict[str, set[str]] = {}
    db = data / "memory.sqlite3"
    if not db.exists():
        return out
    keys = set(chat_keys) if chat_keys is not None else None
    with read_db(db) as conn:
        for chat_key, rid in conn.execute("SELECT chat_key, id FROM records"):
            if keys is None or chat_key in keys:
                out.setdefault(chat_key, set()).add(str(rid))
    return out


def cli_export(config: Path, group: str) -> list[dict[str, Any]]:
    """``python -m bot memory export --group <key>`` (the bot must be stopped: the CLI takes the lock)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "memory", "export", "--group", group, "--config", str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
