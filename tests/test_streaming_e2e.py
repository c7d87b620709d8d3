"""Streamed replies end to end: the web group over HTTP and its WebSocket, the real core, the real litellm
path (LiteLLMModel -> litellm -> openai SDK -> httpx) against the fake OpenAI server in SSE mode.

A person watching the group's live socket sees the bot's message appear with the start of the answer and
then edited into the whole answer, whatever the model's stream did on the way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.brain import APOLOGY
from bot.config import parse_settings
from tests.fake_openai import FakeOpenAI
from tests.test_llm_litellm import loopback_only  # noqa: F401 - autouse: nothing may resolve beyond loopback
from tests.web_members import member_headers

ANSWER = (
    "Bob suggested the lake trail on Saturday; Carol can only come after noon, so the group leaves at one. "
    "Bring water and sunscreen, the trail has little shade."
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def group(tmp_path, fake: FakeOpenAI) -> AsyncIterator[tuple[App, aiohttp.ClientSession, str]]:
    """A running App with the web group and a streaming model at the fake server; yields (app, http, group)."""
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n"
        f"llm: {{model: openai/fake-main, api_base: '{fake.base_url}', api_key: sk-test-key, stream: true,\n"
        "      retry_base_s: 0.01, retry_max_s: 0.01, max_retries: 1, timeout_s: 10}\n"
    )
    app = App(settings)
    await app.start()
    assert app.services is not None
    http = aiohttp.ClientSession(base_url=app.services.adapters["web"].base_url)
    address = (await (await http.post("/api/groups", json={"name": "Hikers"})).json())["address"]
    try:
        yield app, http, address
    finally:
        await http.close()
        await app.stop()


async def post(http: aiohttp.ClientSession, address: str, text: str, author: str) -> dict[str, Any]:
    resp = await http.post(f"/api/groups/{address}/messages", json={"text": text},
                           headers=await member_headers(http, author))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def watch_bot(ws: aiohttp.ClientWebSocketResponse, until_text: str) -> list[tuple[str, int, str]]:
    """The bot's live events, (type, message id, text), until one shows ``until_text``."""
    seen: list[tuple[str, int, str]] = []
    async for frame in ws:
        event = frame.json()
        message = event.get("message") or {}
        if event["type"] in ("message", "edit") and message.get("is_bot"):
            seen.append((event["type"], message["id"], message["text"]))
            if message["text"] == until_text:
                return seen
    raise AssertionError(f"the socket closed first; saw {seen}")


async def ask_and_watch(app: App, http: aiohttp.ClientSession, address: str, final: str):
    async with http.ws_connect(f"/api/groups/{address}/ws") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await post(http, address, "How about the lake trail on Saturday?", "Bob")
        asked = await post(http, address, "@Pai what did we plan?", "Alice")
        seen = await watch_bot(ws, final)
    await app.drain(30)
    listed = await (await http.get(f"/api/groups/{address}/messages?after={asked['id']}")).json()
    return asked, seen, [m for m in listed["messages"] if m["is_bot"]]


async def test_the_answer_appears_as_one_message_edited_into_the_whole_answer(group, fake: FakeOpenAI):
    app, http, address = group
    fake.reply(ANSWER)
    asked, seen, stored = await ask_and_watch(app, http, address, ANSWER)

    (kind, first_id, first_text), *edits = seen
    assert kind == "message" and ANSWER.startswith(first_text) and len(first_text) < len(ANSWER)
    assert edits and all(k == "edit" and mid == first_id for k, mid, _ in edits)
    [reply] = stored  # one message in the group, holding the whole answer
    assert reply["id"] == first_id and reply["text"] == ANSWER and not reply["edited"]  # streaming is no edit
    assert reply["reply_to"]["id"] == asked["id"]
    request = fake.requests[-1]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert "lake trail on Saturday" in fake.prompts[-1]  # the model saw the group's conversation


async def test_a_stream_cut_mid_answer_is_retried_and_the_same_message_ends_whole(group, fake: FakeOpenAI):
    app, http, address = group
    fake.cut_stream(ANSWER[:70]).reply(ANSWER)
    _, seen, stored = await ask_and_watch(app, http, address, ANSWER)
    assert len(fake.requests) == 2
    assert len({mid for _, mid, _ in seen}) == 1 and [m["text"] for m in stored] == [ANSWER]


async def test_a_provider_failing_after_partial_text_leaves_only_the_fixed_apology(group, fake: FakeOpenAI):
    app, http, address = group
    fake.cut_stream(ANSWER[:70]).error(500, "upstream node eu-west-7 exploded")
    _, seen, stored = await ask_and_watch(app, http, address, APOLOGY)
    assert [m["text"] for m in stored] == [APOLOGY]
    assert ANSWER.startswith(seen[0][2])  # the partial answer was on screen before the apology replaced it
    assert not any("eu-west" in text or "exploded" in text for _, _, text in seen)
