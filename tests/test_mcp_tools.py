"""MCP tools through the real app: servers written with the official SDK (tests/mcp_servers), over stdio and
streamable HTTP, called by the scripted model. A well-behaved server's tool answers a question in a group
and the answer names the tool; a hanging or crashing server gives the group a short explanation and never
holds up another group; tools are offered only in their groups, never an admin tool."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.errors import ConfigError
from bot.ports import Completion
from tests.fakes import FakeAdapter, FakeMemory, ScriptedLLM, make_message, tool_call

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def server(kind: str, groups: str = '["fake:g1"]', extra: str = "") -> str:
    return f'{{command: ["{PY}", "-m", "tests.mcp_servers.servers", "{kind}"], groups: {groups}, {extra}}}'


def config(tmp_path: Path, servers: str) -> str:
    return (
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "llm: {model: scripted, retry_base_s: 0.01, retry_max_s: 0.01}\n"
        f"tools:\n  mcp:\n    servers:\n{servers}"
    )


def asks(*wanted: str) -> Any:
    """The scripted model: calls the first of ``wanted`` it is offered for Paris, then answers with what the
    tool said."""

    def script(messages: Any, tools: Any) -> Completion | str:
        results = [m for m in messages if m.get("role") == "tool"]
        if results:
            return f"The tool says: {results[-1]['content']}"
        offered = {t.name for t in tools}
        for tool in wanted:
            if tool in offered:
                return tool_call(tool, json.dumps({"city": "Paris"}))
        return "no tool here"

    return script


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    apps: list[App] = []

    async def run(servers: str, *tools: str) -> tuple[App, FakeAdapter, ScriptedLLM]:
        llm = ScriptedLLM(asks(*tools))
        adapter = FakeAdapter()
        app = App(parse_settings(config(tmp_path, servers), env={}), llm=llm, adapters={"fake": adapter},
                  memory=FakeMemory(), skills=[])  # fmt: skip
        await app.start()
        apps.append(app)
        return app, adapter, llm

    yield run
    for app in apps:
        await app.stop()


def live(text: str, chat: str) -> Any:
    return make_message(text, chat=chat, mentions_me=True, sent_at=datetime.now(timezone.utc))


async def ask(app: App, adapter: FakeAdapter, text: str, chat: str = "g1") -> str:
    before = len(adapter.sent)
    await adapter.inject(live(text, chat=chat))
    await app.drain(timeout=60)
    return adapter.sent[before].text


async def test_a_servers_tool_answers_a_question_in_its_group_and_the_answer_names_it(start: Any) -> None:
    app, adapter, llm = await start(f"      weather: {server('good', extra='admin_tools: [wipe_history]')}\n",
                                    "weather__forecast")  # fmt: skip
    answer = await ask(app, adapter, "@Pai what's the weather in Paris tomorrow?")
    assert answer == "The tool says: Sunny in Paris, 23°C\n\n(🔧 MCP weather/forecast)"
    offered = {t.name: t for t in llm.calls[0]["tools"]}
    assert "weather__forecast" in offered and "weather__wipe_history" not in offered  # admin tools: never
    assert "city" in offered["weather__forecast"].parameters["properties"]  # the server's own schema
    other = await ask(app, adapter, "@Pai what's the weather in Paris tomorrow?", chat="g2")
    assert other == "no tool here"  # not enabled in that group


async def test_a_hanging_server_is_explained_and_other_groups_are_answered_meanwhile(start: Any) -> None:
    g2 = '["fake:g2"]'
    servers = (f"      slow: {server('hanging', extra='timeout_s: 10')}\n"
               f"      weather: {server('good', groups=g2)}\n")  # fmt: skip
    app, adapter, llm = await start(servers, "slow__forecast", "weather__forecast")
    await adapter.inject(live("@Pai weather?", chat="g1"))  # g1 has the hanging server, g2 the good one
    await adapter.inject(live("@Pai weather?", chat="g2"))
    sent = await adapter.wait_sent(2, timeout=60)
    assert sent[0].chat.chat_id == "g2" and "Sunny" in sent[0].text  # not held up by g1's hanging call
    assert sent[1].chat.chat_id == "g1" and "slow/forecast did not answer within 10s" in sent[1].text


async def test_a_call_that_times_out_or_crashes_becomes_a_short_explanation(start: Any) -> None:
    servers = (f"      slow: {server('hanging', extra='timeout_s: 2')}\n"
               f"      boom: {server('crashing')}\n")  # fmt: skip
    app, adapter, llm = await start(servers, "slow__forecast")
    answer = await ask(app, adapter, "@Pai weather?")
    assert "slow/forecast did not answer within 2s" in answer and answer.endswith("(🔧 MCP slow/forecast)")
    llm._script = asks("boom__forecast")
    for _ in range(2):  # the crash, then a server that is gone: a short explanation each time
        answer = await ask(app, adapter, "@Pai weather?")
        assert "boom/forecast" in answer and ("failed" in answer or "unavailable" in answer)
        assert len(answer) < 200


async def test_a_server_that_cannot_start_is_left_out_and_the_bot_runs(start: Any) -> None:
    bad = '{command: ["/nonexistent/mcp-server"], groups: ["fake:g1"], connect_timeout_s: 5}'
    app, adapter, _ = await start(f"      broken: {bad}\n", "broken__forecast")
    assert await ask(app, adapter, "@Pai hello?") == "no tool here"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_streamable_http_server_works_the_same(start: Any) -> None:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "tests.mcp_servers.servers", "good", "http", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        await wait_listening(port)
        url = f"http://127.0.0.1:{port}/mcp"
        app, adapter, _ = await start(f'      web: {{url: "{url}", groups: ["fake:g1"]}}\n', "web__forecast")
        answer = await ask(app, adapter, "@Pai weather in Paris?")
        assert answer == "The tool says: Sunny in Paris, 23°C\n\n(🔧 MCP web/forecast)"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def wait_listening(port: int, timeout: float = 30.0) -> None:
    async def until() -> None:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return

    await asyncio.wait_for(until(), timeout)


def test_a_server_needs_a_command_or_a_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(config(tmp_path, '      odd: {groups: ["fake:g1"]}\n'), env={})
    assert err.value.path == 'tools.mcp.servers."odd"'
