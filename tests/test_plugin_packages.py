"""A new platform and a new skill ship as their own packages, with no edit to the core.

The example adapter (``tests/plugins/paibot-linechat``: a chat room over TCP) and skill
(``tests/plugins/paibot-dice``) are installed with pip into a directory of their own, found through their
entry points once that directory is on the path, and run through the real app: a member of the new platform
rolls dice with a command and through the model's tool call.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.errors import ConfigError
from bot.plugins import discover
from bot.ports import Completion
from tests.fakes import ScriptedLLM, tool_call

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "plugins"
PACKAGES = ("paibot-linechat", "paibot-dice")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example packages installed by pip (no index, no build isolation: nothing is downloaded)."""
    sources = tmp_path_factory.mktemp("src")
    for name in PACKAGES:  # built from a copy: the build leaves its droppings beside the sources
        shutil.copytree(PLUGINS / name, sources / name, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "--target",
        str(target),
        *(str(sources / p) for p in PACKAGES),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name.split("-")[0] for p in target.glob("*.dist-info")) == [
        "paibot_dice",
        "paibot_linechat",
    ]
    return target


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(site))
    return site


def config(tmp_path: Path, extra: str = "") -> str:
    return (
        f"bot: {{name: Pai, data_dir: '{tmp_path / 'data'}'}}\n"
        "llm: {model: scripted, retry_base_s: 0.01, retry_max_s: 0.01}\n"
        "adapters:\n  web: {enabled: false}\n  linechat: {enabled: true, port: 0}\n"
        "skills:\n  dice: {sides: 20}\n" + extra
    )


class Client:
    """A member's linechat client over loopback TCP."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def say(self, text: str) -> None:
        line = {"chat": "lobby", "user": "7", "name": "Ann", "text": text}
        self.writer.write(json.dumps(line).encode() + b"\n")
        await self.writer.drain()

    async def bot_reply(self) -> dict[str, Any]:
        async def next_bot_line() -> dict[str, Any]:
            while True:
                data = json.loads(await self.reader.readline())
                if data.get("is_bot"):
                    return data

        return await asyncio.wait_for(next_bot_line(), 60)


@pytest.fixture
async def running(installed: Path, tmp_path: Path) -> AsyncIterator[tuple[App, Client, ScriptedLLM]]:
    def script(messages: Any, tools: Any) -> Completion | str:
        tool_results = [m for m in messages if m.get("role") == "tool"]
        if tool_results:
            return "Here you go: " + json.loads(tool_results[-1]["content"])["result"]
        return tool_call("roll_dice", '{"count": 1}')

    llm = ScriptedLLM(script)
    app = App(parse_settings(config(tmp_path), env={}), llm=llm, rng=random.Random(7))
    await app.start()
    port = app.services.adapters["linechat"].port  # type: ignore[union-attr, attr-defined]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    yield app, Client(reader, writer), llm
    writer.close()
    await app.stop()


def test_the_example_packages_are_installed_plugins(installed: Path) -> None:
    found = discover()
    assert found.adapters["linechat"].distribution == "paibot-linechat"
    assert found.skills["dice"].distribution == "paibot-dice"
    assert {"web", "telegram", "discord", "matrix"} <= set(found.adapters)  # the built-ins, the same way


async def test_a_member_of_the_new_platform_rolls_dice_by_command(running: Any) -> None:
    _, client, llm = running
    await client.say("/roll 3")
    reply = await client.bot_reply()
    assert reply["text"].startswith("🎲 3d20: ")  # skills.dice.sides from config.yaml
    rolls = reply["text"].split(": ", 1)[1].split(" = ")[0].split(" + ")
    assert len(rolls) == 3 and all(1 <= int(r) <= 20 for r in rolls)
    assert reply["reply_to"] is not None and llm.calls == []  # a command needs no model


async def test_the_model_calls_the_plugins_tool_when_asked_in_words(running: Any) -> None:
    _, client, llm = running
    await client.say("Pai, roll a die for me please")
    reply = await client.bot_reply()
    assert reply["text"].startswith("Here you go: 🎲 d20: ")
    offered = {t.name for t in llm.calls[0]["tools"]}
    assert "roll_dice" in offered


def test_plugin_sections_are_validated_with_key_paths(installed: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(config(tmp_path).replace("port: 0", "port: seven"), env={})
    assert err.value.path == "adapters.linechat.port" and "whole number" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_settings(config(tmp_path).replace("sides: 20", "sides: 1"), env={})
    assert err.value.path == "skills.dice.sides"
    with pytest.raises(ConfigError) as err:
        parse_settings(config(tmp_path).replace("sides: 20", "sidez: 20"), env={})
    assert err.value.path == "skills.dice.sidez" and "unknown key" in str(err.value)


def test_a_section_no_installed_plugin_claims_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(config(tmp_path), env={})  # the example packages are not on the path here
    assert err.value.path == "adapters.linechat" and "no installed plugin claims it" in str(err.value)


def test_paibot_plugins_lists_them_installed_and_enabled(installed: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "bot", "plugins", "--json", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = {(r["kind"], r["name"]): r for r in map(json.loads, out.stdout.splitlines())}
    assert rows[("adapters", "linechat")]["enabled"] and rows[("adapters", "linechat")]["version"] == "0.1.0"
    assert not rows[("adapters", "web")]["enabled"] and not rows[("adapters", "telegram")]["enabled"]
    assert rows[("skills", "dice")]["enabled"] and rows[("skills", "summary")]["enabled"]


def test_the_example_adapter_passes_the_contract_suite_in_its_own_package(installed: Path) -> None:
    """A third party runs the contract suite against its adapter with pytest's defaults (strict asyncio)."""
    package = PLUGINS / "paibot-linechat"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "failed" not in out.stdout
