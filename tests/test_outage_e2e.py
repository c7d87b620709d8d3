"""A platform that is down when the bot starts, end to end.

``App`` is built from a config holding the web group and one platform whose address nothing answers yet.
The web group answers meanwhile; then the platform comes up and a mention there is answered, without a
restart. Telegram (the fake Bot API), Discord (the fake REST API and gateway) and Matrix (a Synapse started
late) are driven through their unmodified SDKs; the waits between connection attempts are in the test's
hands (``GatedClock``), so nothing sleeps. Last, the real process: ``paibot run`` with Telegram pointed at
an address that starts answering later.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.telegram.text import utf16_len
from bot.app import App
from bot.config import parse_settings
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.fakes import FakeMemory, GatedClock, ScriptedLLM
from tests.web_members import member_headers

ROOT = Path(__file__).resolve().parents[1]
GROUP = -1001234567890
ALICE = FakeTelegram.user(42, "Alice", "alice")
ANSWER = "Here I am."


def closed_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_with(tmp_path: Path, platform_yaml: str, clock: GatedClock) -> App:
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "adapters:\n  web: {enabled: true, host: 127.0.0.1, port: 0}\n" + platform_yaml
    )
    llm = ScriptedLLM(lambda messages, tools: ANSWER)
    return App(settings, llm=llm, memory=FakeMemory(), connect_clock=clock)


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def web_group_answers(app: App) -> list[dict[str, Any]]:
    """Post a mention in a new web group; the bot's messages there once the core handled it."""
    assert app.services is not None
    web: Any = app.services.adapters["web"]
    async with aiohttp.ClientSession(base_url=web.base_url) as http:
        group = await (await http.post("/api/groups", json={"name": "Hikers"})).json()
        resp = await http.post(f"/api/groups/{group['address']}/messages", json={"text": "@Pai are you there?"},
                               headers=await member_headers(http, "Alice"))
        assert resp.status == 200, await resp.text()
        await app.drain(30)
        listed = await (await http.get(f"/api/groups/{group['address']}/messages")).json()
    return [m for m in listed["messages"] if m["is_bot"]]


async def test_telegram_down_at_start(tmp_path: Path) -> None:
    fake = FakeTelegram()
    fake.port = closed_port()
    fake.chat(GROUP, title="Hikers")
    clock = GatedClock()
    app = app_with(tmp_path, (
        f"  telegram: {{enabled: true, token: '{fake.token}', base_url: '{fake.base_url}', "
        f"base_file_url: '{fake.base_file_url}', poll_timeout_s: 1}}\n"), clock)  # fmt: skip
    await app.start()
    try:
        assert app.services is not None and "telegram" in app.services.unavailable
        assert [m["text"] for m in await web_group_answers(app)] == [ANSWER]
        await clock.sleeping(1)  # retrying in the background
        await fake.start(fake.port)  # Telegram is back
        await clock.release()
        await until(lambda: "telegram" in app.services.adapters)  # type: ignore[union-attr]
        text = "@pai_test_bot are you there?"
        asked = await fake.message(GROUP, ALICE, text, entities=[
            {"type": "mention", "offset": 0, "length": utf16_len("@pai_test_bot")}])
        await fake.wait_until(lambda: any(
            m.get("reply_to_message", {}).get("message_id") == asked["message_id"] for m in fake.sent), 30)
        assert fake.texts_to(GROUP) == [ANSWER]
    finally:
        await app.stop()
        await fake.close()


async def test_discord_down_at_start(tmp_path: Path) -> None:
    fake = FakeDiscord()
    fake.port = closed_port()
    clock = GatedClock()
    app = app_with(tmp_path, (
        f"  discord: {{enabled: true, token: '{fake.token}', api_base: '{fake.api_base}', "
        f"gateway_url: '{fake.gateway_url}'}}\n"), clock)  # fmt: skip
    await app.start()
    try:
        assert app.services is not None and "discord" in app.services.unavailable
        assert [m["text"] for m in await web_group_answers(app)] == [ANSWER]
        await clock.sleeping(1)
        await fake.start(fake.port)  # Discord is back
        await clock.release()
        await until(lambda: "discord" in app.services.adapters)  # type: ignore[union-attr]
        asked = await fake.user_says(fake.add_user("alice"), f"<@{fake.bot['id']}> are you there?")
        (reply,) = await fake.wait_bot_messages(1, timeout=30)
        assert reply["content"] == ANSWER and reply["message_reference"]["message_id"] == asked["id"]
    finally:
        await app.stop()
        await fake.stop()


@pytest.mark.synapse
async def test_matrix_down_at_start(tmp_path: Path) -> None:
    from tests.matrix_helpers import Human
    from tests.synapse_server import SERVER_NAME, free_port, require_synapse, running_synapse

    require_synapse()
    port = free_port()
    bot_id, alice_id, password = f"@pai:{SERVER_NAME}", f"@alice:{SERVER_NAME}", "the-bots-password"
    clock = GatedClock()
    app = app_with(tmp_path, (
        f"  matrix: {{enabled: true, homeserver: 'http://127.0.0.1:{port}', user_id: '{bot_id}', "
        f"password: '{password}', allowed_inviters: ['{alice_id}']}}\n"), clock)  # fmt: skip
    await app.start()
    (tmp_path / "synapse").mkdir()
    homeserver = running_synapse(tmp_path / "synapse", port)  # entered (started) later
    alice: Human | None = None
    try:
        assert app.services is not None and "matrix" in app.services.unavailable
        assert [m["text"] for m in await web_group_answers(app)] == [ANSWER]
        await clock.sleeping(1)
        server = await asyncio.to_thread(homeserver.__enter__)  # the homeserver comes up (blocking start)
        server.register("pai", password=password, displayname="Pai")
        alice = Human(server, server.register("alice", displayname="Alice"))
        await clock.release()
        await until(lambda: "matrix" in app.services.adapters, 60)  # type: ignore[union-attr]
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_membership(room, bot_id, "join")
        asked = await alice.say(room, "Pai, are you there?", **{"m.mentions": {"user_ids": [bot_id]}})

        def reply(e: dict[str, Any]) -> bool:
            rel = (e.get("content") or {}).get("m.relates_to") or {}
            return e.get("sender") == bot_id and (rel.get("m.in_reply_to") or {}).get("event_id") == asked

        (answer,) = await alice.wait_events(room, reply)
        assert answer["content"]["body"] == ANSWER
    finally:
        await app.stop()
        if alice is not None:
            await alice.close()
        await asyncio.to_thread(homeserver.__exit__, None, None, None)


# --------------------------------------------------------------------------- the real process


class Process:
    """``python -m bot run`` with its output in a file (watched by polling, with deadlines)."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **env})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_output(self, text: str, timeout: float = 90.0) -> None:
        async def loop() -> None:
            while text not in self.output():
                assert self.proc.poll() is None, f"the bot exited ({self.proc.returncode}):\n{self.output()}"
                await asyncio.sleep(0.1)

        await asyncio.wait_for(loop(), timeout)

    async def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.slow
async def test_paibot_run_serves_the_web_group_while_telegram_is_unreachable_and_connects_when_it_answers(
        tmp_path: Path) -> None:
    web_port, tg_port = closed_port(), closed_port()
    fake = FakeTelegram()
    fake.port = tg_port
    fake.chat(GROUP, title="Hikers")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}', welcome: false}}\n"
        "memory: {embedding: offline}\n"
        "adapters:\n"
        f"  web: {{enabled: true, host: 127.0.0.1, port: {web_port}}}\n"
        f"  telegram: {{enabled: true, token: '${{TG_TOKEN}}', base_url: '{fake.base_url}', "
        f"base_file_url: '{fake.base_file_url}', poll_timeout_s: 1}}\n"
    )
    config.chmod(0o600)
    bot = Process(config, tmp_path / "bot.log", {"TG_TOKEN": fake.token})
    base = f"http://127.0.0.1:{web_port}"
    try:
        await bot.wait_output(f"cannot reach the Telegram Bot API at http://127.0.0.1:{tg_port}")
        await bot.wait_output("web group listening")
        async with aiohttp.ClientSession(base_url=base) as http:
            group = await (await http.post("/api/groups", json={"name": "Hikers"})).json()
            address = group["address"]
            body = {"text": "@Pai hi?"}
            resp = await http.post(f"/api/groups/{address}/messages", json=body, headers=await member_headers(http, "Alice"))
            assert resp.status == 200

            async def answered() -> bool:
                listed = await (await http.get(f"/api/groups/{address}/messages")).json()
                return any(m["is_bot"] for m in listed["messages"])

            async def poll() -> None:
                while not await answered():
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(poll(), 60)  # the web group answers while Telegram is down

        await fake.start(tg_port)  # the address answers now
        await fake.wait_until(lambda: any(m == "getUpdates" for m, _ in fake.calls), 90)
        asked = await fake.message(GROUP, ALICE, "@pai_test_bot are you there?", entities=[
            {"type": "mention", "offset": 0, "length": utf16_len("@pai_test_bot")}])
        await fake.wait_until(lambda: any(
            m.get("reply_to_message", {}).get("message_id") == asked["message_id"] for m in fake.sent), 60)
        assert await bot.terminate() == 0, bot.output()
    except BaseException:
        print(bot.output()[-6000:])
        raise
    finally:
        bot.kill()
        await fake.close()
    lines = [line for line in bot.output().splitlines() if "cannot reach the Telegram Bot API" in line]
    assert len([line for line in lines if "WARNING" in line]) == 1, lines  # one line for the whole outage
    assert "connected after" in bot.output()
    assert fake.token not in bot.output()
    print("\n".join(line for line in bot.output().splitlines() if "telegram" in line and "DEBUG" not in line))
