"""One 派 across three platforms, end to end: a web group (HTTP), a Telegram group (the fake Bot API through
unmodified python-telegram-bot) and a Matrix room (a real Synapse through unmodified matrix-nio), relayed
through the real core (inbox, memory, relay queue) with a scripted model.

Three people, one on each platform, hold one conversation, and the AI member answers all of them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.config import MatrixAdapterSettings
from adapters.matrix.sync import SyncOptions
from adapters.web.adapter import create_adapter as create_web
from adapters.web.config import WebAdapterSettings
from adapters.web.store import WebStore
from bot.app import App
from bot.config import parse_settings
from bot.ports import AdapterEnv
from tests.fake_telegram import FakeTelegram, make_adapter
from tests.fakes import ScriptedLLM
from tests.matrix_helpers import Human
from tests.synapse_server import SynapseServer
from tests.web_members import member_headers

pytestmark = pytest.mark.synapse

TG_GROUP = -1005550001
ALICE = FakeTelegram.user(42, "Alice", "alice")
WAIT_S = 60.0


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""

    async def loop() -> Any:
        while True:
            got = check()
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return got
            await asyncio.sleep(0.1)

    try:
        return await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


@dataclass
class Pai:
    app: App
    tg: FakeTelegram
    web: aiohttp.ClientSession
    web_group: str  # its number (the core's chat id)
    room: str
    bob: Human  # on Matrix
    alice_mx: Human  # Alice's second account, on Matrix
    bot_mx: str
    llm: ScriptedLLM
    web_address: str  # what its page and API paths use

    # ---- reading each platform

    def tg_texts(self) -> list[str]:
        return [m["text"] for m in self.tg.sent if m["chat"]["id"] == TG_GROUP and "text" in m]

    async def web_messages(self) -> list[dict[str, Any]]:
        listed = await (await self.web.get(f"/api/groups/{self.web_address}/messages?limit=200")).json()
        return listed["messages"]

    async def web_texts(self) -> list[str]:
        return [m["text"] for m in await self.web_messages()]

    async def mx_bot_events(self) -> list[dict[str, Any]]:
        return [e for e in await self.bob.history(self.room, 200)
                if e.get("sender") == self.bot_mx and e.get("type") == "m.room.message"]

    async def mx_texts(self) -> list[str]:
        return [e["content"].get("body", "") for e in await self.mx_bot_events()
                if "m.new_content" not in e["content"]]

    # ---- writing on each platform

    async def web_post(self, text: str, author: str = "Carol", **extra: Any) -> dict[str, Any]:
        resp = await self.web.post(f"/api/groups/{self.web_address}/messages", json={"text": text, **extra},
                                   headers=await member_headers(self.web, author))
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.fixture
async def pai(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[Pai]:  # noqa: F811
    tg = await FakeTelegram().start()
    tg.chat(TG_GROUP, title="Hikers")
    bot_user = synapse.register(synapse.unique("pai"), displayname="Pai")
    bob = Human(synapse, synapse.register(synapse.unique("bob"), displayname="Bob"))
    alice_mx = Human(synapse, synapse.register(synapse.unique("alice"), displayname="Alice M"))
    room = await bob.create_room(invite=[bot_user.user_id, alice_mx.user.user_id], name="Hikers MX")
    await alice_mx.join(room)
    data = tmp_path / "data"
    data.mkdir()
    store = WebStore(data / "web.db")
    web_room = store.create_group("Hikers web")
    web_group = web_room.number
    store.close()
    settings = parse_settings(
        f"bot: {{name: Pai, data_dir: '{data}', welcome: false}}\n"
        "limits: {member_per_minute: 1000, group_per_minute: 1000}\n"
        "skills: {intro: {enabled: false}, files: {enabled: false}, images: {enabled: false}}\n"
        f"pais: {{hikers: {{groups: ['web:{web_group}', 'telegram:{TG_GROUP}', 'matrix:{room}'], relay: true}}}}\n",
        env={},
    )
    env = AdapterEnv("Pai", data)
    matrix = MatrixAdapter(
        MatrixAdapterSettings(enabled=True, homeserver=synapse.base_url, user_id=bot_user.user_id,
                              password=bot_user.password, allowed_inviters=(bob.user.user_id,)),
        options=SyncOptions(sync_timeout_ms=1_000, allowed_inviters=(bob.user.user_id,)),
    )
    adapters = {
        "web": create_web(WebAdapterSettings(enabled=True, port=0), env),
        "telegram": make_adapter(tg, data),
        "matrix": matrix,
    }
    llm = ScriptedLLM(lambda messages, tools: answer_for(messages))
    app = App(settings, llm=llm, adapters=adapters)
    await app.start()
    await bob.wait_membership(room, bot_user.user_id, "join")
    await matrix.synced.wait()
    web = aiohttp.ClientSession(base_url=adapters["web"].base_url)  # type: ignore[attr-defined]
    world = Pai(app, tg, web, web_group, room, bob, alice_mx, bot_user.user_id, llm, web_room.address)
    try:
        yield world
    finally:
        await web.close()
        await app.stop()
        await tg.close()
        await bob.close()
        await alice_mx.close()


def answer_for(messages: Any) -> str:
    """The scripted model names who asked, so each answer can be told apart."""
    asked = re.search(r"\n(.+?) is asking you: (.*)$", messages[-1]["content"])
    return f"Answer for {asked.group(1)}: noted." if asked else "noted."


async def test_three_people_on_three_platforms_hold_one_conversation(pai: Pai) -> None:
    # Alice writes on Telegram: the Matrix room and the web group read it with her name and platform
    alice_msg = await pai.tg.message(TG_GROUP, ALICE, "Shall we hike on Saturday?")
    await until(lambda: _has(pai.mx_texts(), "[TG] Alice: Shall we hike on Saturday?"), "Alice's copy on Matrix")
    await until(lambda: _has(pai.web_texts(), "[TG] Alice: Shall we hike on Saturday?"), "Alice's copy on the web")

    # Bob answers on Matrix by replying to the copy: on Telegram it is a reply to Alice's own message
    copy = next(e for e in await pai.mx_bot_events() if "Shall we hike" in e["content"]["body"])
    await pai.bob.say(pai.room, "Yes, the lake trail!", **{
        "m.relates_to": {"m.in_reply_to": {"event_id": copy["event_id"]}}, "m.mentions": {}})
    await until(lambda: "[MX] Bob: Yes, the lake trail!" in pai.tg_texts(), "Bob's copy on Telegram")
    tg_copy = next(m for m in pai.tg.sent if m.get("text") == "[MX] Bob: Yes, the lake trail!")
    assert tg_copy["reply_to_message"]["message_id"] == alice_msg["message_id"]
    web_msgs = await until(lambda: _find(pai.web_messages(), "[MX] Bob: Yes, the lake trail!"), "Bob on the web")
    web_alice = next(m for m in await pai.web_messages() if m["text"].startswith("[TG] Alice: Shall"))
    assert web_msgs["reply_to"]["id"] == web_alice["id"]

    # Carol writes on the web: both others read her
    await pai.web_post("I'll bring sandwiches")
    await until(lambda: "[Web] Carol: I'll bring sandwiches" in pai.tg_texts(), "Carol on Telegram")
    await until(lambda: _has(pai.mx_texts(), "[Web] Carol: I'll bring sandwiches"), "Carol on Matrix")

    # Alice edits her message: the copies follow
    await pai.tg.push("edited_message", {**alice_msg, "text": "Shall we hike on Sunday?", "edit_date": alice_msg["date"] + 5})
    await until(lambda: _edited(pai, "[TG] Alice: Shall we hike on Sunday?"), "the edit on Matrix")
    await until(lambda: _has(pai.web_texts(), "[TG] Alice: Shall we hike on Sunday?"), "the edit on the web")

    # Each asks the AI member where they are; each is answered once, there, and the others read the answer
    asked = await pai.web_post("@Pai where do we meet?")
    await until(lambda: "Answer for Carol: noted." in pai.tg_texts(), "the web answer relayed to Telegram")
    await pai.tg.message(TG_GROUP, ALICE, "@pai_test_bot what time?",
                         entities=[{"type": "mention", "offset": 0, "length": 13}])
    await until(lambda: _has(pai.mx_texts(), "Answer for Alice: noted."), "the Telegram answer relayed to Matrix")
    await pai.bob.say(pai.room, "Pai, is it far?", **{"m.mentions": {"user_ids": [pai.bot_mx]}})
    await until(lambda: _has(pai.web_texts(), "Answer for Bob: noted."), "the Matrix answer relayed to the web")
    await pai.app.drain(60)

    assert len(pai.llm.calls) == 3  # one question each, one answer each
    web_answer = next(m for m in await pai.web_messages() if m["text"] == "Answer for Carol: noted.")
    assert web_answer["reply_to"]["id"] == asked["id"]  # answered where asked, to the question
    for texts in (pai.tg_texts(), await pai.mx_texts(), await pai.web_texts()):
        for answer in ("Answer for Carol: noted.", "Answer for Alice: noted.", "Answer for Bob: noted."):
            assert texts.count(answer) == 1, (answer, texts)
    # The model knew where each line came from
    prompt = pai.llm.prompts[-1]
    for line in ("[TG] Alice: Shall we hike on Sunday?", "[Web] Carol: I'll bring sandwiches",
                 '[MX] Bob (replying to Alice: "Shall we hike on Sunday?"): Yes, the lake trail!'):
        assert line in prompt, prompt
    assert "https://matrix.to/" in prompt and "t.me" not in prompt  # links a Matrix member can open

    # Every message is remembered once, where it was written; copies are not remembered
    memory = pai.app.services.memory  # type: ignore[union-attr]
    records = await memory.recent("pai:hikers", 200)
    said = [r.text for r in records if not r.is_bot]
    assert said.count("Yes, the lake trail!") == 1 and said.count("I'll bring sandwiches") == 1
    assert not any(r.text.startswith("[") for r in records)
    assert sorted(r.text for r in records if r.is_bot) == sorted(
        ["Answer for Carol: noted.", "Answer for Alice: noted.", "Answer for Bob: noted."])


async def test_link_then_forget_me_removes_the_persons_words_from_both_accounts(pai: Pai) -> None:
    # Alice asks for a code in a private chat with the bot on Telegram
    pai.tg.chat(ALICE["id"], type="private", title="Alice")
    await pai.tg.message(ALICE["id"], ALICE, "/link")
    reply = await until(lambda: [m["text"] for m in pai.tg.sent if m["chat"]["id"] == ALICE["id"]], "the code")
    code = re.search(r"code: ([A-Z0-9]{8})", reply[-1]).group(1)  # type: ignore[union-attr]
    # ... and gives it from her Matrix account
    await pai.alice_mx.say(pai.room, f"/link {code}", **{"m.mentions": {}})
    linked = await until(lambda: _find_mx(pai, "one person"), "the link confirmation")
    assert "Alice (TG)" in linked and "Alice M (MX)" in linked

    await pai.tg.message(TG_GROUP, ALICE, "my phone is 555 0101")
    await pai.alice_mx.say(pai.room, "my flat is 4B", **{"m.mentions": {}})
    await pai.bob.say(pai.room, "bob's words stay", **{"m.mentions": {}})
    await until(lambda: "[MX] Alice M: my flat is 4B" in pai.tg_texts(), "Alice's Matrix words on Telegram")
    await until(lambda: "[MX] Bob: bob's words stay" in pai.tg_texts(), "Bob's words on Telegram")
    await until(lambda: _has(pai.web_texts(), "[TG] Alice: my phone is 555 0101"), "Alice's words on the web")
    await pai.app.drain(60)

    await pai.alice_mx.say(pai.room, "/forget-me", **{"m.mentions": {}})
    await until(lambda: _find_mx(pai, "removed"), "the /forget-me answer")
    await pai.app.drain(60)
    memory = pai.app.services.memory  # type: ignore[union-attr]
    said = " ".join(r.text for r in await memory.recent("pai:hikers", 500))
    assert "555 0101" not in said and "4B" not in said and "bob's words stay" in said
    # her copies on the other platforms are deleted there
    assert not any("555 0101" in t or "4B" in t for t in pai.tg_texts() if _still_there(pai, t))
    assert not any("555 0101" in t or "4B" in t for t in await pai.web_texts())  # edited to "(deleted)"


async def test_a_member_joins_the_pais_web_group_as_themself(pai: Pai) -> None:
    pai.tg.chat(ALICE["id"], type="private", title="Alice")
    await pai.tg.message(TG_GROUP, ALICE, "/signin")
    await until(lambda: any("private message" in t for t in pai.tg_texts()), "the answer in the group")
    dm = await until(lambda: [m["text"] for m in pai.tg.sent if m["chat"]["id"] == ALICE["id"]], "the link")
    url = re.search(r"(http://\S+/signin/\S+)", dm[-1]).group(1)  # type: ignore[union-attr]
    assert url not in " ".join(pai.tg_texts())  # the link never shows in a group
    path = url.split("/", 3)[3]
    async with pai.web.get(f"/{path}", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == f"/g/{pai.web_address}"
        key = resp.cookies["paibot_member"].value
    async with pai.web.get(f"/{path}", allow_redirects=False) as again:
        assert again.status == 410  # once only
    headers = {"Authorization": f"Member {key}"}
    me = await (await pai.web.get("/api/members/me", headers=headers)).json()
    assert me["nickname"] == "Alice"
    people = pai.app.services.people  # type: ignore[union-attr]
    assert people.person_of(f"web:{me['author_id']}") == people.person_of("telegram:42")
    resp = await pai.web.post(f"/api/groups/{pai.web_address}/messages", json={"text": "hi from the browser"},
                              headers=headers)
    assert resp.status == 200, await resp.text()
    await until(lambda: "[Web] Alice: hi from the browser" in pai.tg_texts(), "Alice's web words on Telegram")
    await until(lambda: _has(pai.mx_texts(), "[Web] Alice: hi from the browser"), "... and on Matrix")
    # nobody else posts as her: not without a key, not with another member's key
    keyless = await pai.web.post(f"/api/groups/{pai.web_address}/messages",
                                 json={"author_id": me["author_id"], "text": "it's me"})
    assert keyless.status == 401
    forged = await pai.web.post(f"/api/groups/{pai.web_address}/messages",
                                json={"author_id": me["author_id"], "text": "it's me"},
                                headers=await member_headers(pai.web, "Alice"))  # another "Alice"
    assert forged.status == 403
    # a new link (another browser) gives that browser its own key; this one stays signed in until she
    # signs the others out from the new one
    await pai.tg.message(TG_GROUP, ALICE, "/signin")
    dm = await until(lambda: [m["text"] for m in pai.tg.sent if m["chat"]["id"] == ALICE["id"]][1:], "a new link")
    path = re.search(r"(http://\S+/signin/\S+)", dm[-1]).group(1).split("/", 3)[3]  # type: ignore[union-attr]
    async with pai.web.get(f"/{path}", allow_redirects=False) as resp:
        assert resp.status == 303
        new_key = resp.cookies["paibot_member"].value
    new_headers = {"Authorization": f"Member {new_key}"}
    again = await (await pai.web.get("/api/members/me", headers=new_headers)).json()
    assert again["author_id"] == me["author_id"]
    assert (await (await pai.web.get("/api/members/me", headers=headers)).json())["author_id"] == me["author_id"]
    keyless = await pai.web.delete("/api/members/me/keys")
    assert keyless.status == 401 and (await keyless.json())["need"] == "member"  # a key, not the access token
    out = await pai.web.delete("/api/members/me/keys", headers=new_headers)
    assert out.status == 200 and await out.json() == {"signed_out": 1}
    assert (await pai.web.get("/api/members/me", headers=headers)).status == 204
    retired = await pai.web.post(f"/api/groups/{pai.web_address}/messages", json={"text": "still me?"},
                                 headers=headers)
    assert retired.status == 401 and (await retired.json())["need"] == "member"
    assert (await pai.web.get("/api/members/me", headers=new_headers)).status == 200


def _still_there(pai: Pai, text: str) -> bool:
    chat = pai.tg.chats[TG_GROUP]
    return any(m.get("text") == text for m in chat.messages.values())


async def _has(texts_coro: Any, text: str) -> bool:
    return text in await texts_coro


async def _find(messages_coro: Any, text: str) -> dict[str, Any] | None:
    return next((m for m in await messages_coro if m["text"] == text), None)


async def _find_mx(pai: Pai, words: str) -> str | None:
    return next((t for t in await pai.mx_texts() if words in t), None)


async def _edited(pai: Pai, text: str) -> bool:
    return any(e["content"].get("m.new_content", {}).get("body") == text for e in await pai.mx_bot_events())
