"""The Matrix adapter against a real Synapse on loopback, driven by a second nio client as the human.

Adapter level: a recording intake sink stands in for the core, so each test asserts exactly what the
adapter delivered and what it sent. The process-level tests (the real ``paibot run``) are at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.sync import E2E_WARNED, NEXT_BATCH, SyncOptions
from adapters.matrix.config import MatrixAdapterSettings
from bot.events import ChatRef, Outgoing, OutgoingFile
from tests.matrix_helpers import Human, RecordingSink, sent_by
from tests.synapse_server import SynapseServer

pytestmark = pytest.mark.synapse


class World:
    """One test's accounts: the bot, alice (allowed to invite it) and bob (not allowed)."""

    def __init__(self, server: SynapseServer) -> None:
        self.server = server
        self.bot = server.register(server.unique("pai"), displayname="Pai")
        self.alice_user = server.register(server.unique("alice"), displayname="Alice")
        self.bob_user = server.register(server.unique("bob"), displayname="Bob")
        self.alice = Human(server, self.alice_user)
        self.bob = Human(server, self.bob_user)
        self.adapters: list[MatrixAdapter] = []

    def settings(self, **overrides: Any) -> MatrixAdapterSettings:
        base: dict[str, Any] = dict(
            enabled=True, homeserver=self.server.base_url, user_id=self.bot.user_id,
            password=self.bot.password, allowed_inviters=(self.alice_user.user_id,),
        )
        base.update(overrides)
        return MatrixAdapterSettings(**base)

    async def start_bot(self, sink: RecordingSink, *, timeline_limit: int = 50,
                        **overrides: Any) -> MatrixAdapter:
        cfg = self.settings(**overrides)
        adapter = MatrixAdapter(cfg, options=SyncOptions(timeline_limit=timeline_limit, sync_timeout_ms=2_000,
                                                         allowed_inviters=cfg.allowed_inviters))
        await adapter.start(sink)
        self.adapters.append(adapter)
        await adapter.synced.wait()
        return adapter

    async def group(self, sink: RecordingSink) -> str:
        """A three-member room (alice, bob, the bot) the bot has joined."""
        room = await self.alice.create_room(invite=[self.bot.user_id, self.bob_user.user_id])
        await self.bob.join(room)
        await self.alice.wait_membership(room, self.bot.user_id, "join")
        return room

    async def close(self) -> None:
        for adapter in self.adapters:
            await adapter.stop()
        await self.alice.close()
        await self.bob.close()


@pytest.fixture
async def world(synapse: SynapseServer) -> AsyncIterator[World]:  # noqa: F811 - pytest fixture injection
    w = World(synapse)
    yield w
    await w.close()


def in_room(room: str) -> Callable[[Any], bool]:
    return lambda m: m.chat.chat_id == room


# --------------------------------------------------------------------------- invites


async def test_joins_when_an_allowed_user_invites_and_records_what_is_said(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)

    hello = await world.bob.say(room, "hello everyone, the launch is on Friday")
    (msg,) = await sink.wait_for(lambda m: m.id == hello)

    assert msg.text == "hello everyone, the launch is on Friday"
    assert msg.event_id == f"matrix:{hello}"
    assert msg.chat == ChatRef("matrix", room, title="Group")
    assert msg.author.user_id == world.bob_user.user_id and msg.author.display_name == "Bob"
    assert not msg.mentions_me and not msg.is_direct and not msg.from_me
    assert msg.url.startswith("https://matrix.to/#/%21") and msg.url.endswith(hello.replace("$", "%24"))
    assert sink.cursors[NEXT_BATCH]
    assert bot.user_id == world.bot.user_id


async def test_refuses_an_invite_from_a_user_not_allowed(world: World) -> None:
    sink = RecordingSink()
    await world.start_bot(sink)
    room = await world.bob.create_room(invite=[world.bot.user_id], name="Not allowed")
    await world.bob.wait_membership(room, world.bot.user_id, "leave")
    await world.bob.say(room, "Pai, are you there?")
    # The bot never joined, so the message never reaches it; its sync moved past the invite.
    allowed = await world.group(sink)
    probe = await world.alice.say(allowed, "probe")
    await sink.wait_for(lambda m: m.id == probe)
    assert not [m for m in sink.order if m.chat.chat_id == room]


async def test_server_suffix_allows_every_user_of_that_server(world: World) -> None:
    sink = RecordingSink()
    await world.start_bot(sink, allowed_inviters=(f":{world.server.server_name}",))
    room = await world.bob.create_room(invite=[world.bot.user_id])
    await world.bob.wait_membership(room, world.bot.user_id, "join")


async def test_empty_allow_list_refuses_everyone(world: World) -> None:
    sink = RecordingSink()
    await world.start_bot(sink, allowed_inviters=())
    room = await world.alice.create_room(invite=[world.bot.user_id])
    await world.alice.wait_membership(room, world.bot.user_id, "leave")


# --------------------------------------------------------------------------- triggers


async def test_triggers_mentions_pills_replies_commands_and_threads(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink, command_prefixes=("!",))
    room = await world.group(sink)
    me = world.bot.user_id

    intentional = await world.alice.say(room, "what do you think?", **{"m.mentions": {"user_ids": [me]}})
    # A pill without the display name in the body: only the matrix.to link can make it a mention.
    pill = await world.alice.say(room, "bot: summarise please", format="org.matrix.custom.html",
                                 formatted_body=f'<a href="https://matrix.to/#/{me}">bot</a>: summarise',
                                 **{"m.mentions": {}})
    by_name = await world.bob.say(room, "hey pai, what was decided?")
    plain = await world.bob.say(room, "lunch at noon")
    command = await world.alice.say(room, "!help")
    ref = await bot.send(Outgoing(ChatRef("matrix", room), "The launch is Friday."))
    reply = await world.bob.say(
        room, f"> <{me}> The launch is Friday.\n\nwhich time?",
        format="org.matrix.custom.html",
        formatted_body=f"<mx-reply><blockquote>The launch is Friday.</blockquote></mx-reply>which time?",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": ref.message_id}}, "m.mentions": {}},
    )
    in_thread = await world.bob.say(room, "a side topic", **{"m.relates_to": {
        "rel_type": "m.thread", "event_id": plain, "is_falling_back": True,
        "m.in_reply_to": {"event_id": plain}}})

    got = {m.id: m for m in await sink.wait_for(in_room(room), n=8)}
    assert got[intentional].mentions_me
    assert got[pill].mentions_me
    assert got[by_name].mentions_me
    assert not got[plain].mentions_me
    assert got[command].text == "/help"
    assert got[ref.message_id].from_me and got[ref.message_id].author.is_bot
    r = got[reply]
    assert r.text == "which time?"  # the reply fallback is stripped
    assert r.reply_to is not None and r.reply_to.message_id == ref.message_id
    assert r.reply_to.author is not None and r.reply_to.author.user_id == me
    assert r.reply_to.text == "The launch is Friday."
    assert r.mentions_me  # a reply to the bot addresses it
    assert got[in_thread].thread == plain
    assert got[in_thread].reply_to is None  # a thread fallback is not a reply


async def test_two_member_room_is_direct(world: World) -> None:
    sink = RecordingSink()
    await world.start_bot(sink)
    room = await world.alice.create_room(invite=[world.bot.user_id], is_direct=True, name="")
    await world.alice.wait_membership(room, world.bot.user_id, "join")
    hi = await world.alice.say(room, "hi")
    (msg,) = await sink.wait_for(lambda m: m.id == hi)
    assert msg.is_direct


async def test_history_before_the_bot_joined_is_not_recorded(world: World) -> None:
    sink = RecordingSink()
    await world.start_bot(sink)
    room = await world.alice.create_room(name="Old")
    old = await world.alice.say(room, "Pai, an ancient question from before you came")
    await world.alice.invite(room, world.bot.user_id)
    await world.alice.wait_membership(room, world.bot.user_id, "join")
    new = await world.alice.say(room, "welcome!")
    await sink.wait_for(lambda m: m.id == new)
    assert old not in {m.id for m in sink.order}


# --------------------------------------------------------------------------- replies


async def test_reply_is_threaded_to_the_trigger_and_pings_only_the_asker(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)
    ask = await world.alice.say(room, "Pai, status?", **{"m.mentions": {"user_ids": [world.bot.user_id]}})
    text = ("**Done**: see [the plan](https://example.org/plan?a=1&b=2) — @room <b>raw</b> `code` "
            "<script>x</script>")
    ref = await bot.send(Outgoing(ChatRef("matrix", room), text, reply_to=ask,
                                  mention_user_ids=(world.alice_user.user_id,),
                                  idempotency_key=f"matrix:{ask}"))

    (event,) = await world.alice.wait_events(room, lambda e: e.get("event_id") == ref.message_id)
    content = event["content"]
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": ask}}
    assert content["m.mentions"] == {"user_ids": [world.alice_user.user_id]}
    assert "@room" not in content["body"]
    html = content["formatted_body"]
    assert "<strong>Done</strong>" in html
    assert '<a href="https://example.org/plan?a=1&amp;b=2">the plan</a>' in html
    assert "<code>code</code>" in html
    assert "<b>" not in html and "<script>" not in html and "&lt;script&gt;" in html
    assert "@room" not in html


async def test_reply_inside_a_thread_stays_in_the_thread(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)
    root = await world.bob.say(room, "thread root")
    ask = await world.alice.say(room, "Pai?", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    (trigger,) = await sink.wait_for(lambda m: m.id == ask)
    ref = await bot.send(Outgoing(trigger.chat, "in the thread", reply_to=ask, thread=trigger.thread))
    (event,) = await world.alice.wait_events(room, lambda e: e.get("event_id") == ref.message_id)
    rel = event["content"]["m.relates_to"]
    assert rel["rel_type"] == "m.thread" and rel["event_id"] == root
    assert rel["m.in_reply_to"] == {"event_id": ask} and rel["is_falling_back"] is False


async def test_a_retried_send_is_not_duplicated(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)
    out = Outgoing(ChatRef("matrix", room), "only once", idempotency_key="matrix:$trigger")
    first = await bot.send(out)
    again = await bot.send(out)
    other = await bot.send(Outgoing(ChatRef("matrix", room), "a different text",
                                    idempotency_key="matrix:$trigger"))
    assert again.message_id == first.message_id
    assert other.message_id != first.message_id
    events = await world.alice.wait_events(room, sent_by(world.bot.user_id), n=2)
    assert [e["content"]["body"] for e in events] == ["only once", "a different text"]


async def test_long_text_is_split_and_edits_replace(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)
    long_text = "\n\n".join(f"paragraph {i} " + "词" * 3000 for i in range(4))
    ref = await bot.send(Outgoing(ChatRef("matrix", room), long_text))
    assert len(ref.part_ids) >= 2
    events = await world.alice.wait_events(room, sent_by(world.bot.user_id), n=len(ref.part_ids))
    assert "".join(e["content"]["body"] for e in events).count("词") == 12000

    short = await bot.send(Outgoing(ChatRef("matrix", room), "draft"))
    await bot.edit(short, "final answer")
    (edit,) = await world.alice.wait_events(
        room, lambda e: (e.get("content") or {}).get("m.relates_to", {}).get("rel_type") == "m.replace")
    assert edit["content"]["m.relates_to"]["event_id"] == short.message_id
    assert edit["content"]["m.new_content"]["body"] == "final answer"
    (edited,) = await sink.wait_for(lambda m: m.edited and m.id == short.message_id)
    assert edited.text == "final answer" and edited.from_me


# --------------------------------------------------------------------------- files


async def test_images_and_files_reach_the_core_and_download_size_limited(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)
    ref = await bot.send(Outgoing(ChatRef("matrix", room), "", files=(
        OutgoingFile("notes.txt", "text/plain", b"meeting notes: ship on Friday"),)))
    (msg,) = await sink.wait_for(lambda m: m.id == ref.message_id)
    (att,) = msg.attachments
    assert (att.kind, att.name, att.mime, att.size) == ("file", "notes.txt", "text/plain", 29)
    assert att.source.startswith("mxc://")
    assert await bot.fetch_attachment(att, max_bytes=1000) == b"meeting notes: ship on Friday"
    from bot.errors import DeliveryError

    with pytest.raises(DeliveryError):
        await bot.fetch_attachment(att, max_bytes=10)
    lying = type(att)(att.kind, att.name, att.mime, 0, att.source)  # a size the sender under-reported
    with pytest.raises(DeliveryError):
        await bot.fetch_attachment(lying, max_bytes=10)


# --------------------------------------------------------------------------- durability


async def test_downtime_gap_is_backfilled_once_each(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink, timeline_limit=3)
    room = await world.group(sink)
    before = await world.alice.say(room, "before the outage")
    await sink.wait_for(lambda m: m.id == before)
    await bot.stop()

    sent = [await world.bob.say(room, f"while down {i}") for i in range(12)]
    await world.start_bot(sink, timeline_limit=3)
    await sink.wait_for(lambda m: m.id == sent[-1])
    texts = sink.texts(room)
    assert [t for t in texts if t.startswith("while down")] == [f"while down {i}" for i in range(12)]
    assert texts.count("before the outage") == 1
    assert sink.duplicates == 0  # the backfill stopped at what was already committed


async def test_device_id_is_kept_across_restarts(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    first = sink.cursors["matrix:device_id"]
    await bot.stop()
    await world.start_bot(sink)
    assert sink.cursors["matrix:device_id"] == first


async def test_access_token_login(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink, password="", access_token=world.bot.access_token)
    room = await world.group(sink)
    ref = await bot.send(Outgoing(ChatRef("matrix", room), "token works"))
    await sink.wait_for(lambda m: m.id == ref.message_id)


async def test_bad_password_is_an_operator_error(world: World) -> None:
    from bot.errors import AdapterConfigError

    cfg = world.settings(password="wrong")
    with pytest.raises(AdapterConfigError, match="login"):
        await MatrixAdapter(cfg).start(RecordingSink())


# --------------------------------------------------------------------------- encryption


async def test_encrypted_room_is_told_once_that_encryption_is_unsupported(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.alice.create_room(invite=[world.bot.user_id], encrypted=True, name="Secret")
    (notice,) = await world.alice.wait_events(room, sent_by(world.bot.user_id, "m.notice"))
    assert "encrypted" in notice["content"]["body"]
    assert sink.cursors[E2E_WARNED + room] == "1"
    await bot.stop()
    await world.alice.send(room, {"msgtype": "m.text", "body": "plain text in an encrypted room"})
    await world.start_bot(sink)
    probe = await world.alice.say(room, "probe after restart")
    await sink.wait_for(lambda m: m.id == probe)
    notices = [e for e in await world.alice.history(room) if sent_by(world.bot.user_id, "m.notice")(e)]
    assert len(notices) == 1



# --------------------------------------------------------------------------- the real process


class BotProcess:
    """``python -m bot run --config FILE`` as a child process (the real composition root, no model)."""

    def __init__(self, world: World, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "config.yaml"
        self.config.write_text(yaml.safe_dump({
            "bot": {"name": "Pai", "data_dir": str(tmp / "data"), "welcome": False},
            "llm": {"model": ""},
            "memory": {"embedding": "offline"},
            "log_level": "INFO",
            "adapters": {
                "web": {"enabled": False},
                "matrix": {
                    "enabled": True, "homeserver": world.server.base_url, "user_id": world.bot.user_id,
                    "password": "${PAI_MATRIX_PASSWORD}", "allowed_inviters": [world.alice_user.user_id],
                },
            },
        }))
        self.env = {**os.environ, "PAI_MATRIX_PASSWORD": world.bot.password}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = open(self.tmp / f"bot-{self.runs}.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(self.config)],
                                     cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def export(self, group: str) -> list[dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "bot", "memory", "export", "--group", group,
                              "--config", str(self.config)],
                             cwd=self.tmp, env=self.env, capture_output=True, timeout=120, check=True)
        return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("bot-*.log")))


def replies_to(bot_id: str, event_id: str) -> Callable[[dict[str, Any]], bool]:
    def pred(e: dict[str, Any]) -> bool:
        rel = (e.get("content") or {}).get("m.relates_to") or {}
        return sent_by(bot_id)(e) and (rel.get("m.in_reply_to") or {}).get("event_id") == event_id

    return pred


async def test_the_bot_process_answers_mentions_only_and_survives_sigkill(world: World,
                                                                          tmp_path: Path) -> None:
    bot = BotProcess(world, tmp_path)
    alice, bob, me = world.alice, world.bob, world.bot.user_id
    bot.start()
    try:
        room = await world.alice.create_room(invite=[me, world.bob_user.user_id])
        await bob.join(room)
        await alice.wait_membership(room, me, "join")
        mention = {"m.mentions": {"user_ids": [me]}}

        m1 = await alice.say(room, "Pai, when is the launch?", **mention)
        m2 = await bob.say(room, "the launch moved to Friday")
        (r1,) = await alice.wait_events(room, replies_to(me, m1))
        assert r1["content"]["m.mentions"] == {"user_ids": [world.alice_user.user_id]}

        m3 = await alice.say(room, "Pai, and the budget?", **mention)
        bot.kill()  # wherever it was: syncing, recording m3, answering it
        m4 = await alice.say(room, "Pai, are you back?", **mention)
        m5 = await bob.say(room, "budget is 10k")
        m6 = await alice.say(room, "Pai, who owns the launch?", **mention)
        m7 = await bob.say(room, "I own the launch")
        bot.start()
        await alice.wait_events(room, replies_to(me, m4))
        await alice.wait_events(room, replies_to(me, m6))
        m8 = await alice.say(room, "Pai, thanks", **mention)
        await alice.wait_events(room, replies_to(me, m8))
        assert bot.terminate() == 0
    except BaseException:
        if bot.proc is not None and bot.proc.poll() is None:
            bot.kill()
        print(bot.logs())
        raise

    history = await alice.history(room, limit=200)
    answers = {m: len([e for e in history if replies_to(me, m)(e)]) for m in (m1, m2, m3, m4, m5, m6, m7, m8)}
    # Mentions are answered exactly once; m3 (in flight at the kill) at most once; plain messages never.
    assert answers[m1] == answers[m4] == answers[m6] == answers[m8] == 1, answers
    assert answers[m3] <= 1, answers
    assert answers[m2] == answers[m5] == answers[m7] == 0, answers

    records = bot.export(f"matrix:{room}")
    ids = [r.get("id") for r in records]
    for m in (m1, m2, m3, m4, m5, m6, m7, m8):
        assert ids.count(m) == 1, (m, ids)
    texts = {r.get("id"): r.get("text") for r in records}
    assert texts[m5] == "budget is 10k" and texts[m7] == "I own the launch"


async def test_typing_shows_and_the_bot_leaves_a_room_everyone_left(world: World) -> None:
    sink = RecordingSink()
    bot = await world.start_bot(sink)
    room = await world.group(sink)
    first = await world.alice.client.sync(timeout=0)
    await bot.typing(ChatRef("matrix", room))

    async def typing_users() -> list[str]:
        token = first.next_batch
        while True:
            resp = await world.alice.client.sync(timeout=5_000, since=token)
            token = resp.next_batch
            info = resp.rooms.join.get(room)
            for ev in info.ephemeral if info else []:
                if getattr(ev, "users", None):
                    return list(ev.users)

    assert await asyncio.wait_for(typing_users(), 30) == [world.bot.user_id]

    await world.bob.client.room_leave(room)
    await world.alice.client.room_leave(room)
    as_bot = Human(world.server, world.bot)  # a second session of the bot's account, to observe it
    try:
        async def until_left() -> None:
            while room in (await as_bot.client.joined_rooms()).rooms:
                await asyncio.sleep(0.1)

        await asyncio.wait_for(until_left(), 30)
    finally:
        await as_bot.close()
