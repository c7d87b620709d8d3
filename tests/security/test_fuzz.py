"""Fuzzing: malformed platform payloads, API bodies, config files and core messages never crash the bot.

Each adapter's intake path gets generated payloads (hypothesis where the path is synchronous, a seeded
mutator where it runs over the fake servers); a bad payload must be skipped (logged), never raise out of
the intake, and a good message right after must still arrive. The core loop (``Member.handle`` with the
default skills, no model) survives 20,000 generated messages (100,000 under the ``soak`` marker).
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Bot, Update

from adapters.matrix.convert import Me, Quoted, RoomFacts, to_message
from adapters.telegram.chats import ChatMap
from adapters.telegram.convert import BotIdentity
from adapters.telegram.intake import TelegramIntake
from adapters.web.adapter import WebAdapter
from bot.config import parse_settings
from bot.errors import ConfigError
from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef
from tests.fake_discord import FakeDiscord
from tests.fake_discord import RecordingSink as DiscordSink
from tests.fake_telegram import RecordingClock, RecordingSink
from tests.security.obedient import build_app
from tests.test_discord_adapter import make_adapter as make_discord_adapter
from tests.web_members import member_headers

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "x" * 10_000, "\x00", "😀" * 50, "-100", "1e309", "mxc://", "@room"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """A copy of ``value`` with random keys dropped, retyped or added (the seeded twin of the strategies)."""
    junk = [None, True, -1, 2**63, 1e309, float("nan"), "", "x" * 5000, "\x00\ud7ff", [], {}, [1, "a"], {"a": 1}]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            roll = rng.random()
            if roll < 0.1:
                continue
            out[k] = rng.choice(junk) if roll < 0.25 else mutate(v, rng, depth + 1)
        if rng.random() < 0.2:
            out[rng.choice(["extra", "type", "id", "content"])] = rng.choice(junk)
        return out
    if isinstance(value, list):
        return [mutate(v, rng, depth + 1) for v in value if rng.random() > 0.1]
    return rng.choice(junk) if rng.random() < 0.2 else value


# --------------------------------------------------------------------------- Telegram


def tg_message() -> dict[str, Any]:
    return {
        "message_id": 7, "date": int(time.time()), "text": "@pai_bot hi",
        "chat": {"id": -1001, "type": "supergroup", "title": "G"},
        "from": {"id": 42, "is_bot": False, "first_name": "Alice"},
        "entities": [{"type": "mention", "offset": 0, "length": 8}],
        "reply_to_message": {"message_id": 6, "date": 1, "chat": {"id": -1001, "type": "supergroup"},
                             "text": "earlier", "from": {"id": 43, "is_bot": False, "first_name": "Bob"}},
    }


@st.composite
def tg_updates(draw: Any) -> dict[str, Any]:
    msg = tg_message()
    for key in draw(st.lists(st.sampled_from(sorted(msg)), max_size=4)):
        if draw(st.booleans()):
            msg.pop(key, None)
        else:
            msg[key] = draw(JUNK)
    for key in draw(st.lists(st.sampled_from(["chat", "from", "reply_to_message"]), max_size=2)):
        if isinstance(msg.get(key), dict) and msg[key]:
            inner = msg[key]
            inner[draw(st.sampled_from(sorted(inner)))] = draw(JUNK)
    kind = draw(st.sampled_from(["message", "edited_message", "channel_post", "callback_query"]))
    if kind == "edited_message":
        msg["edit_date"] = draw(st.one_of(st.integers(min_value=-(2**40), max_value=2**40), JUNK))
    return {"update_id": draw(st.integers(min_value=1, max_value=2**31)), kind: msg}


@pytest.fixture(scope="module")
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


BOT = Bot("123:fuzz")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(update=tg_updates())
def test_telegram_intake_skips_malformed_updates(loop, update):
    sink = RecordingSink()
    bot = BOT
    intake = TelegramIntake(bot, BotIdentity(99, "pai_bot", "Pai"), sink, ChatMap(sink), RecordingClock())
    try:
        parsed: Update | None = Update.de_json(copy.deepcopy(update), bot)
    except Exception:  # noqa: BLE001 - the intake records an unparsable update as None (skipped)
        parsed = None
    # must not raise: one bad update would otherwise block the offset and the whole batch forever
    cursor = loop.run_until_complete(intake.commit([(update["update_id"], parsed)], "telegram:offset"))
    assert cursor == update["update_id"] + 1


# --------------------------------------------------------------------------- Matrix

ME = Me("@pai:hs", ("Pai",))
ROOM = RoomFacts("!r:hs", "Room", False, {"@a:hs": "Alice"})


def mx_event() -> dict[str, Any]:
    return {
        "type": "m.room.message", "event_id": "$e1", "sender": "@a:hs", "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": "> <@b:hs> q\n\nPai hi", "formatted_body": "<b>hi</b>",
                    "m.mentions": {"user_ids": ["@pai:hs"]},
                    "m.relates_to": {"m.in_reply_to": {"event_id": "$e0"}}},
    }


@settings(max_examples=600, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), quoted=st.booleans())
def test_matrix_conversion_never_raises_on_malformed_events(seed, quoted):
    event = mutate(mx_event(), random.Random(seed))
    out = to_message(event, ROOM, ME, Quoted("$e0", "@b:hs", "q") if quoted else None)
    assert out is None or isinstance(out, Message)
    if out is not None:
        Message.from_dict(json.loads(json.dumps(out.to_dict())))  # the inbox can store and replay it


# --------------------------------------------------------------------------- Discord (gateway, fake server)


async def test_discord_gateway_survives_malformed_message_create(tmp_path):
    fake = FakeDiscord()
    await fake.start()
    adapter = make_discord_adapter(fake, tmp_path)
    sink = DiscordSink()
    await adapter.start(sink)
    rng = random.Random(20261101)
    alice = fake.add_user("alice")
    try:
        template = await fake.user_says(alice, "template")
        await sink.wait_until(lambda: any(e.text == "template" for e in sink.messages()))
        n = 150
        for i in range(n):
            payload = mutate(copy.deepcopy(template), rng)
            if isinstance(payload, dict):
                payload["id"] = str(fake.next_id())
            await fake.dispatch("MESSAGE_CREATE", payload)
        await fake.user_says(alice, "still alive?")
        await sink.wait_until(lambda: any(e.text == "still alive?" for e in sink.messages()), timeout=60)
        print(f"discord: {n} malformed MESSAGE_CREATE payloads, intake still delivering")
    finally:
        await adapter.stop()
        await fake.stop()


# --------------------------------------------------------------------------- web API


async def test_web_api_answers_malformed_bodies_without_a_server_error(tmp_path):
    adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0)
    sink = RecordingSink()
    await adapter.start(sink)
    rng = random.Random(7)
    statuses: dict[int, int] = {}
    try:
        group = await adapter.create_group("Fuzz")
        valid = {"author": "Alice", "text": "hello", "reply_to": None, "nonce": "n"}
        async with aiohttp.ClientSession(base_url=adapter.base_url) as http:
            alice = await member_headers(http, "Alice")  # a member: the fuzzing reaches the body's validation
            for i in range(300):
                body = mutate(dict(valid), rng)
                if i % 5 == 0:
                    data, ctype = bytes(rng.randrange(256) for _ in range(rng.randrange(200))), "application/json"
                else:
                    data, ctype = json.dumps(body, allow_nan=True).encode(), "application/json"
                resp = await http.post(f"/api/groups/{group.address}/messages", data=data,
                                       headers={"Content-Type": ctype, **alice})
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            ok = await http.post(f"/api/groups/{group.address}/messages", json={"text": "fine"},
                                 headers=await member_headers(http, "Bob"))
            assert ok.status == 200
        print(f"web: 300 malformed bodies -> statuses {dict(sorted(statuses.items()))}; no 5xx")
        assert all(s < 500 for s in statuses)
    finally:
        await adapter.stop()


# --------------------------------------------------------------------------- config files

SECTIONS = ["bot", "llm", "memory", "triggers", "access", "limits", "adapters", "groups", "pais", "web",
            "telegram", "name", "admins", "allowed_groups", "keywords", "token", "enabled", "port", "webhook"]


@settings(max_examples=200, deadline=None)
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
    | st.sampled_from(["${HOME}", "${NOPE}", "${X:-d}", "x" * 100_000, "群组🙂\u202e", "telegram:-100"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(SECTIONS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
))
def test_nested_unicode_and_huge_config_values_only_ever_raise_config_errors(doc):
    try:
        parse_settings(yaml.safe_dump({"bot": doc} if not isinstance(doc, dict) else doc, allow_unicode=True),
                       env={"HOME": "/h"})
    except ConfigError:
        pass


# --------------------------------------------------------------------------- the core loop


def generated_messages(n: int, seed: int, now: datetime) -> list[Message]:
    rng = random.Random(seed)
    words = ["@Pai", "/help", "/summary", "/remind", "in", "2h", "/poll", "|", "/todo", "add", "/done", "1",
             "/settings", "name", "/search", "/forget-me", "/optout", "/optin", "/pick", "/check", "/edit",
             "rotate", "pizza", "每天", "提醒", "😀", "\u202e", "\x00", "@everyone", "x" * 3000, "", "?", "remind"]
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randrange(0, 8)))
        chat = f"g{rng.randrange(40)}"
        author = PersonRef("fake", rng.choice(["a", "b", "c", "boss", "", "\x00", "😀"]), rng.choice(["A", "", "B"]),
                           is_bot=rng.random() < 0.05)
        reply = ReplyRef(rng.choice(["1", "bot-1", "", "m3"]), rng.choice(["", "done 1", "1", "x" * 500])) \
            if rng.random() < 0.3 else None
        atts = (Attachment(rng.choice(["file", "image", "audio"]), rng.choice(["a.pdf", "", "../x"]),
                           rng.choice(["application/pdf", "image/png", ""]), rng.randrange(-5, 10**9), "nope"),) \
            if rng.random() < 0.05 else ()
        out.append(Message(
            event_id=f"fuzz:{seed}:{i}", id=str(rng.randrange(50)), chat=ChatRef("fake", chat, chat),
            author=author, text=text, sent_at=now - timedelta(seconds=rng.randrange(-3600, 20_000)),
            reply_to=reply, mentions_me=rng.random() < 0.3, is_direct=rng.random() < 0.05,
            from_me=rng.random() < 0.02, edited=rng.random() < 0.05, forwarded=rng.random() < 0.05,
            attachments=atts,
        ))
    return out


async def survive(tmp_path: Any, n: int) -> None:
    app, adapter = await build_app(tmp_path, None,
                                   extra="limits: {member_per_minute: 5, group_per_minute: 20}\n")
    failures = 0
    try:
        now = app.services.clock.now()
        for m in generated_messages(n, seed=n, now=now):
            try:
                await app.member.handle(m)
            except Exception:  # noqa: BLE001 - counted: the worker would retry and dead-letter it
                failures += 1
            app.services.clock.advance(0.05)
        print(f"core loop: {n} generated messages, {failures} handler failures, {len(adapter.sent)} replies")
        assert failures == 0
    finally:
        await app.stop()


async def test_the_core_loop_survives_generated_messages(tmp_path):
    await survive(tmp_path, 20_000)


@pytest.mark.soak
async def test_the_core_loop_survives_100000_generated_messages(tmp_path):
    await survive(tmp_path, 100_000)
