"""The web group through the real core: ``App`` builds the web adapter from settings, people post over HTTP,
the member pipeline answers in the group."""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import App
from bot.config import parse_settings
from tests.fakes import ScriptedLLM
from tests.web_members import member_headers


def settings_for(tmp_path, extra: str = ""):
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "adapters: {web: {enabled: true, host: 127.0.0.1, port: 0}}\n" + extra
    )


@pytest.fixture
async def running(tmp_path):
    """Start an App with the given LLM; yields a builder returning (app, http session)."""
    started: list[tuple[App, aiohttp.ClientSession]] = []

    async def build(llm):
        app = App(settings_for(tmp_path), llm=llm)
        await app.start()
        assert app.services is not None
        web = app.services.adapters["web"]
        http = aiohttp.ClientSession(base_url=web.base_url)
        started.append((app, http))
        return app, http

    yield build
    for app, http in started:
        await http.close()
        await app.stop()


async def post(http, group: str, text: str, author: str = "Alice", **extra) -> dict:
    resp = await http.post(f"/api/groups/{group}/messages", json={"text": text, **extra},
                           headers=await member_headers(http, author))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def bot_messages_after(app: App, http, group: str, after: int) -> list[dict]:
    """Every message the bot wrote after ``after``, once the core has handled everything received."""
    await app.drain(30)
    listed = await (await http.get(f"/api/groups/{group}/messages?after={after}")).json()
    return [m for m in listed["messages"] if m["is_bot"]]


async def test_an_at_mention_posted_over_http_gets_the_models_reply_in_the_group(running):
    llm = ScriptedLLM(["Hello Alice! The lake trail sounds great."])
    app, http = await running(llm)
    group = await (await http.post("/api/groups", json={"name": "Hikers"})).json()
    address = group["address"]
    await post(http, address, "How about the lake trail on Saturday?", author="Bob")
    asked = await post(http, address, "@Pai hello, what do you think?")

    [reply] = await bot_messages_after(app, http, address, asked["id"])
    assert reply["text"] == "Hello Alice! The lake trail sounds great."
    assert reply["author"] == "Pai" and reply["reply_to"]["id"] == asked["id"]
    # The model saw the group's conversation with who said what.
    prompt = llm.prompts[-1]
    assert "Bob" in prompt and "lake trail on Saturday" in prompt
    assert "Alice" in prompt and "what do you think?" in prompt


async def test_a_message_that_does_not_address_the_bot_gets_no_reply(running):
    llm = ScriptedLLM(["should not be said"])
    app, http = await running(llm)
    group = await (await http.post("/api/groups", json={"name": "Quiet"})).json()
    said = await post(http, group["address"], "just chatting among ourselves about the weather")
    assert await bot_messages_after(app, http, group["address"], said["id"] - 1) == []
    assert llm.calls == []


async def test_replying_to_the_bots_message_is_enough_to_get_an_answer(running):
    llm = ScriptedLLM(["Saturday at nine.", "Sunday works too."])
    app, http = await running(llm)
    group = await (await http.post("/api/groups", json={"name": "Plans"})).json()
    address = group["address"]
    asked = await post(http, address, "@Pai when do we leave?")
    [first] = await bot_messages_after(app, http, address, asked["id"])
    follow_up = await post(http, address, "and on Sunday?", author="Bob", reply_to=first["id"])
    [second] = await bot_messages_after(app, http, address, follow_up["id"])
    assert second["text"] == "Sunday works too."
    assert "Saturday at nine." in llm.prompts[-1]


async def test_without_a_model_the_bot_answers_from_the_groups_memory(running):
    app, http = await running(None)
    group = await (await http.post("/api/groups", json={"name": "Picnic"})).json()
    address = group["address"]
    await post(http, address, "The picnic is at the lake pavilion on Saturday", author="Bob")
    asked = await post(http, address, "@Pai where is the picnic?")

    [reply] = await bot_messages_after(app, http, address, asked["id"])
    assert "Here is what this group said about it" in reply["text"]
    assert "lake pavilion" in reply["text"] and "Bob" in reply["text"]
