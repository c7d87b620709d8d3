"""The Discord adapter through the unmodified discord.py against the fake Discord (REST + gateway on
loopback), with a recording inbox in place of the core."""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.adapter import DiscordAdapter, create_adapter, invite_url
from adapters.discord.config import DiscordAdapterSettings
from bot.config import parse_settings
from bot.errors import (
    AdapterConfigError,
    ConfigError,
    CredentialsRejected,
    DeliveryError,
    PlatformUnavailable,
)
from bot.events import Attachment, ChatRef, Outgoing, Poll
from bot.ports import AdapterEnv, ChatAdapter, CommandInfo
from bot.supervisor import CONNECTING, RUNNING, STOPPED, AdapterSupervisor
from tests.fake_discord import FakeDiscord, RecordingSink
from tests.fakes import GatedClock

COMMANDS = (CommandInfo("ask", "Ask the AI member", "a question"), CommandInfo("summary", "Summarise", "when"),
            CommandInfo("remind", "Set a reminder"))


def make_adapter(fake: FakeDiscord, tmp_path: Any, **cfg: Any) -> DiscordAdapter:
    settings = DiscordAdapterSettings(enabled=True, token=cfg.pop("token", fake.token),
                                      api_base=cfg.pop("api_base", fake.api_base),
                                      gateway_url=cfg.pop("gateway_url", fake.gateway_url), **cfg)
    env = AdapterEnv(bot_name="Pai", data_dir=tmp_path, commands=COMMANDS, max_attachment_bytes=1024)
    return DiscordAdapter(settings, env, guild_ready_timeout=0.05, ready_timeout_s=20)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def running(fake: FakeDiscord, tmp_path: Any) -> AsyncIterator[tuple[DiscordAdapter, RecordingSink]]:
    adapter = make_adapter(fake, tmp_path)
    sink = RecordingSink()
    await adapter.start(sink)
    await sink.wait_until(lambda: adapter._sync is not None and adapter._sync.passes >= 1)
    yield adapter, sink
    await adapter.stop()


async def said(fake: FakeDiscord, sink: RecordingSink, user: dict[str, Any], text: str, **kw: Any) -> Any:
    raw = await fake.user_says(user, text, **kw)
    event_id = f"discord:{raw['id']}"
    await sink.wait_until(lambda: event_id in sink.events)
    return sink.events[event_id]


def bot_posts(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests_to("POST", r"/channels/\d+/messages")]


async def test_is_a_chat_adapter_with_discord_capabilities(fake: FakeDiscord, tmp_path: Any) -> None:
    adapter = make_adapter(fake, tmp_path)
    assert isinstance(adapter, ChatAdapter)
    caps = adapter.capabilities
    assert (caps.max_text_length, caps.edit, caps.polls, caps.files, caps.threads, caps.typing, caps.links) == (
        2000, True, True, True, True, True, True)


async def test_mention_arrives_addressed_and_the_reply_is_a_safe_discord_reply(running: Any, fake: FakeDiscord
                                                                                 ) -> None:
    adapter, sink = running
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    msg = await said(fake, sink, alice, f"<@{fake.bot['id']}> what did bob say about the trip?")
    assert msg.mentions_me and not msg.is_direct and not msg.from_me
    assert msg.chat.chat_id == str(fake.general) and msg.chat.key == f"discord:{fake.general}"
    assert msg.author.user_id == alice["id"] and msg.author.display_name == "Alice"
    assert msg.text == "@Paibot what did bob say about the trip?"
    assert msg.url.endswith(f"/{fake.guild_id}/{fake.general}/{msg.id}")
    assert sink.cursors[f"discord:last:{fake.general}"] == msg.id

    answer = f"Bob said he'd drive, <@{bob['id']}> correct me! @everyone @here <@&{fake.guild_id}> see https://x.y"
    ref = await adapter.send(Outgoing(msg.chat, answer, reply_to=msg.id, idempotency_key=msg.event_id))

    body = bot_posts(fake)[-1]
    assert body["message_reference"] == {"type": 0, "message_id": int(msg.id), "channel_id": fake.general,
                                         "fail_if_not_exists": False}
    assert body["allowed_mentions"] == {"parse": [], "users": [int(alice["id"])], "replied_user": True}
    assert body["flags"] & 4  # SUPPRESS_EMBEDS
    assert body["enforce_nonce"] is True and 0 < len(body["nonce"]) <= 25
    assert "@everyone" not in body["content"] and "@here" not in body["content"]
    stored = fake.sent_by_bot()[-1]
    assert stored["id"] == ref.message_id and ref.url.endswith(f"/{fake.general}/{ref.message_id}")
    # What the server actually pinged: the replied-to author only. Not bob, not the role, not everyone.
    assert [u["id"] for u in stored["mentions"]] == [alice["id"]]
    assert stored["mention_everyone"] is False and stored["mention_roles"] == []
    # The bot's own message comes back through the gateway, marked as ours.
    own = f"discord:{ref.message_id}"
    await sink.wait_until(lambda: own in sink.events)
    assert sink.events[own].from_me and not sink.events[own].mentions_me


async def test_plain_message_is_delivered_but_not_addressed(running: Any, fake: FakeDiscord) -> None:
    _, sink = running
    msg = await said(fake, sink, fake.add_user("carol"), "lunch at noon?")
    assert not msg.mentions_me and not msg.is_direct and msg.text == "lunch at noon?"
    assert bot_posts(fake) == []


async def test_role_mention_reply_to_bot_thread_and_dm_triggers(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    dave = fake.add_user("dave")
    role = await said(fake, sink, dave, f"<@&{fake.bot_role_id}> hi")
    assert role.mentions_me
    other_role = await said(fake, sink, dave, f"<@&{fake.guild_id}> hi")
    assert not other_role.mentions_me

    ref = await adapter.send(Outgoing(role.chat, "hello there", reply_to=role.id))
    reply = await said(fake, sink, dave, "thanks!", reply_to=ref.message_id)
    assert reply.mentions_me and reply.reply_to is not None
    assert reply.reply_to.message_id == ref.message_id and reply.reply_to.text == "hello there"
    assert reply.reply_to.author is not None and reply.reply_to.author.user_id == fake.bot["id"]

    dm = fake.add_dm(dave)
    direct = await said(fake, sink, dave, "psst", channel=dm)
    assert direct.is_direct and direct.chat.chat_id == str(dm)


async def test_thread_messages_map_to_threads(fake: FakeDiscord, tmp_path: Any) -> None:
    thread = fake.add_channel("trip planning", parent_id=fake.general, thread=True)
    adapter, sink = make_adapter(fake, tmp_path), RecordingSink()
    await adapter.start(sink)
    try:
        msg = await said(fake, sink, fake.add_user("erin"), f"<@{fake.bot['id']}> in thread", channel=thread)
        assert msg.thread == str(thread) and msg.chat.chat_id == str(fake.general)
        await adapter.send(Outgoing(msg.chat, "answer in thread", reply_to=msg.id, thread=msg.thread))
        assert [m["content"] for m in fake.sent_by_bot(thread)] == ["answer in thread"]
    finally:
        await adapter.stop()


async def test_a_5000_character_answer_is_split_on_sensible_boundaries(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    msg = await said(fake, sink, fake.add_user("frank"), f"<@{fake.bot['id']}> essay please")
    paragraphs = [f"Paragraph {i}. " + "word " * 120 for i in range(9)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) > 5000
    ref = await adapter.send(Outgoing(msg.chat, text, reply_to=msg.id, idempotency_key=msg.event_id))
    posts = bot_posts(fake)
    assert len(posts) == 3 and len(ref.part_ids) == 3
    assert all(len(p["content"]) <= 2000 for p in posts)
    assert "\n\n".join(p["content"] for p in posts) == text  # cut only at paragraph breaks
    assert "message_reference" in posts[0] and all("message_reference" not in p for p in posts[1:])
    assert len({p["nonce"] for p in posts}) == 3


async def test_resend_with_same_idempotency_key_is_deduplicated_by_nonce(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    msg = await said(fake, sink, fake.add_user("gina"), f"<@{fake.bot['id']}> once")
    out = Outgoing(msg.chat, "only once", reply_to=msg.id, idempotency_key=msg.event_id)
    first = await adapter.send(out)
    again = await adapter.send(out)
    assert first.message_id == again.message_id
    assert [m["content"] for m in fake.sent_by_bot()] == ["only once"]


async def test_rate_limited_send_is_retried_after_retry_after(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    msg = await said(fake, sink, fake.add_user("hana"), f"<@{fake.bot['id']}> hi")
    fake.rate_limit_next("POST", rf"/channels/{fake.general}/messages", retry_after=0.05, times=2)
    await adapter.send(Outgoing(msg.chat, "after the rate limit", reply_to=msg.id))
    assert len(fake.requests_to("POST", rf"/channels/{fake.general}/messages")) == 3
    assert [m["content"] for m in fake.sent_by_bot()] == ["after the rate limit"]


async def test_edit_typing_poll_files_and_attachments(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    ivan = fake.add_user("ivan")
    msg = await said(fake, sink, ivan, f"<@{fake.bot['id']}> look", attachments=[("a.png", "image/png", b"P" * 100)])
    (att,) = msg.attachments
    assert (att.kind, att.name, att.mime, att.size) == ("image", "a.png", "image/png", 100)
    assert await adapter.fetch_attachment(att, max_bytes=500) == b"P" * 100
    with pytest.raises(DeliveryError):
        await adapter.fetch_attachment(att, max_bytes=50)
    with pytest.raises(DeliveryError):  # a size that lies is still cut off while streaming
        await adapter.fetch_attachment(Attachment("file", "a.png", "image/png", 10, att.source), max_bytes=50)

    ref = await adapter.send(Outgoing(msg.chat, "draft", reply_to=msg.id))
    await adapter.edit(ref, "final @everyone")
    assert fake.sent_by_bot()[-1]["content"] == "final @\u200beveryone"
    assert fake.sent_by_bot()[-1]["mention_everyone"] is False

    await adapter.typing(msg.chat)
    assert fake.requests_to("POST", rf"/channels/{fake.general}/typing")

    await adapter.send(Outgoing(msg.chat, "", poll=Poll("Where?", ("park", "beach"), close_after_s=7200)))
    poll = bot_posts(fake)[-1]["poll"]
    assert poll["question"] == {"text": "Where?"} and poll["duration"] == 2
    assert [a["poll_media"]["text"] for a in poll["answers"]] == ["park", "beach"]

    from bot.events import OutgoingFile
    await adapter.send(Outgoing(msg.chat, "here", files=(OutgoingFile("n.txt", "text/plain", b"notes"),)))
    files_body = bot_posts(fake)[-1]
    assert files_body["content"] == "here" and files_body["_files"] == [{"name": "n.txt", "data": b"notes"}]


async def test_slash_commands_registered_deferred_and_answered(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    assert {c["name"] for c in fake.commands} == {"ask", "summary", "remind"}
    jane = fake.add_user("jane")
    inter = await fake.slash_command(jane, "summary", "yesterday")
    event_id = f"discord:interaction:{inter['id']}"
    await sink.wait_until(lambda: event_id in sink.events)
    msg = sink.events[event_id]
    assert msg.text == "/summary yesterday" and msg.mentions_me and msg.author.user_id == jane["id"]
    assert fake.interaction_callbacks and fake.interaction_callbacks[0]["body"] == {"type": 5}

    ref = await adapter.send(Outgoing(msg.chat, "Yesterday: " + "x " * 1500, reply_to=msg.id))
    patched = fake.requests_to("PATCH", rf"/webhooks/{fake.application_id}/{inter['token']}/messages/@original")
    followed = fake.requests_to("POST", rf"/webhooks/{fake.application_id}/{inter['token']}")
    assert len(patched) == 1 and len(followed) == 1 and len(ref.part_ids) == 2
    assert patched[0].json["allowed_mentions"]["parse"] == []
    await adapter.edit(ref, "Yesterday: short")
    assert fake.sent_by_bot()[0]["content"] == "Yesterday: short"


async def test_empty_contents_warn_once(fake: FakeDiscord, tmp_path: Any, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    fake.strip_content = True
    adapter, sink = make_adapter(fake, tmp_path), RecordingSink()
    await adapter.start(sink)
    try:
        with caplog.at_level(logging.WARNING, logger="paibot.discord"):
            kim = fake.add_user("kim")
            await said(fake, sink, kim, "one")
            await said(fake, sink, kim, "two")
            seen = await said(fake, sink, kim, f"<@{fake.bot['id']}> three")
        assert seen.text.endswith("three")
        warnings = [r for r in caplog.records if "Message Content Intent" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await adapter.stop()


async def test_missing_message_content_intent_is_a_config_error(fake: FakeDiscord, tmp_path: Any) -> None:
    fake.message_content_enabled = False
    adapter = make_adapter(fake, tmp_path)
    with pytest.raises(AdapterConfigError, match="Message Content Intent"):
        await adapter.start(RecordingSink())
    assert fake.server_close_codes == [4014]
    await adapter.stop()


async def test_invalid_token_is_a_config_error(fake: FakeDiscord, tmp_path: Any) -> None:
    adapter = make_adapter(fake, tmp_path, token="wrong")
    with pytest.raises(CredentialsRejected, match="Reset Token"):
        await adapter.start(RecordingSink())
    await adapter.stop()


async def test_a_token_refused_by_the_gateway_is_a_rejected_credential(fake: FakeDiscord, tmp_path: Any
                                                                        ) -> None:
    fake.reject_identify = True  # close code 4004: authentication failed
    adapter = make_adapter(fake, tmp_path)
    with pytest.raises(CredentialsRejected, match="4004"):
        await adapter.start(RecordingSink())
    await adapter.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_discord_down_at_start_is_an_outage_naming_its_api_and_a_later_start_connects(tmp_path: Any
                                                                                           ) -> None:
    server = FakeDiscord()
    server.port = port = closed_port()  # nothing listens there yet
    adapter, sink = make_adapter(server, tmp_path), RecordingSink()
    with pytest.raises(PlatformUnavailable) as err:
        await adapter.start(sink)
    assert f"cannot reach Discord's API at http://127.0.0.1:{port}/api/v10" in str(err.value)
    assert server.token not in str(err.value)
    await server.start(port)  # Discord is back
    try:
        await adapter.start(sink)
        kim = server.add_user("kim")
        assert (await said(server, sink, kim, "hello again")).text == "hello again"
        await adapter.stop()
    finally:
        await server.stop()


async def test_an_unreachable_gateway_is_an_outage_too(fake: FakeDiscord, tmp_path: Any) -> None:
    port = closed_port()
    adapter = make_adapter(fake, tmp_path, gateway_url=f"ws://127.0.0.1:{port}/gateway")
    with pytest.raises(PlatformUnavailable, match=f"cannot reach Discord's gateway at ws://127.0.0.1:{port}"):
        await adapter.start(RecordingSink())
    await adapter.stop()


async def test_a_long_outage_after_start_is_ridden_out_with_waits_of_at_most_60s(fake: FakeDiscord,
                                                                                 tmp_path: Any) -> None:
    """Discord goes away for good while the bot runs. discord.py cannot get it back, the adapter says so
    (``connection_lost``) and its supervisor reconnects it with a fresh session, never waiting more than 60 s
    between attempts (discord.py's own reconnect backoff grows to ~17 minutes); sends meanwhile are a wait
    (PlatformUnavailable), not a failure. Back, it catches up on what was said meanwhile."""
    clock = GatedClock()
    adapter, sink = make_adapter(fake, tmp_path), RecordingSink()
    sup = AdapterSupervisor("discord", adapter, sink, clock=clock, rng=random.Random(11))
    sup.launch()
    try:
        await sink.wait_until(lambda: sup.state == RUNNING and adapter._sync is not None
                              and adapter._sync.passes >= 1)
        lena = fake.add_user("lena")
        await said(fake, sink, lena, "before the outage")
        await fake.stop()
        for n in range(1, 12):  # the loss, then ten failed reconnections
            await clock.sleeping(n)
            assert sup.state == CONNECTING
            await clock.release()
        await clock.sleeping(12)
        with pytest.raises(PlatformUnavailable):
            await adapter.send(Outgoing(ChatRef("discord", str(fake.general)), "are you there?"))
        assert max(clock.slept) <= 60.0 and min(clock.slept[7:]) >= 30.0
        missed = await fake.user_says(lena, f"<@{fake.bot['id']}> said while the bot was away")
        await fake.start(fake.port)  # back
        await clock.release()
        await sink.wait_until(lambda: f"discord:{missed['id']}" in sink.events, timeout=30)
        assert sup.state == RUNNING
        ref = await adapter.send(Outgoing(ChatRef("discord", str(fake.general)), "I am back"))
        assert ref.message_id
    finally:
        await sup.stop()


async def test_a_token_reset_while_running_stops_the_adapter_with_the_instruction(fake: FakeDiscord,
                                                                                  tmp_path: Any) -> None:
    adapter, sink = make_adapter(fake, tmp_path), RecordingSink()
    sup = AdapterSupervisor("discord", adapter, sink, clock=GatedClock(), rng=random.Random(12))
    sup.launch()
    try:
        await sink.wait_until(lambda: sup.state == RUNNING)
        fake.reject_identify = True  # the token was reset in the portal
        await fake.close_gateways(code=4004)
        await sink.wait_until(lambda: sup.state == STOPPED, timeout=30)
        assert "Reset Token" in sup.reason and "4004" in sup.reason
    finally:
        await sup.stop()


async def test_endpoint_overrides_leave_discord_py_globals_alone(running: Any) -> None:
    assert Route.BASE == "https://discord.com/api/v10"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"


async def test_invite_url_and_factory() -> None:
    settings = parse_settings("adapters:\n  web: {enabled: false}\n  discord: {enabled: true, token: t0k3n, "
                              "application_id: '123456789012345678'}\n")
    url = invite_url(settings.adapters.discord)
    assert url.startswith("https://discord.com/oauth2/authorize?client_id=123456789012345678")
    assert "scope=bot+applications.commands" in url
    perms = discord.Permissions(int(url.split("permissions=")[1].split("&")[0]))
    assert perms.send_messages and perms.read_message_history and perms.view_channel
    assert not perms.mention_everyone and not perms.administrator
    # Without an application id, it is read from the token's first segment (base64 of the bot's id).
    import base64
    token = base64.b64encode(b"987654321").decode().rstrip("=") + ".x.y"
    from_token = parse_settings(f"adapters:\n  discord: {{enabled: true, token: '{token}'}}\n")
    assert "client_id=987654321" in invite_url(from_token.adapters.discord)
    with pytest.raises(ConfigError):
        invite_url(parse_settings("adapters:\n  discord: {enabled: true, token: 'not-base64!'}\n").adapters.discord)
    adapter = create_adapter(settings.adapters.discord, AdapterEnv(bot_name="Pai", data_dir="."))
    assert adapter.name == "discord"


async def test_gateway_drop_resumes_and_recovers_messages_sent_meanwhile(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    lena = fake.add_user("lena")
    await said(fake, sink, lena, "before the drop")
    passes = adapter._sync.passes if adapter._sync else 0
    await fake.close_gateways(code=4000)
    missed = await fake.user_says(lena, f"<@{fake.bot['id']}> sent while the socket was down")
    await sink.wait_until(lambda: f"discord:{missed['id']}" in sink.events)
    assert sink.events[f"discord:{missed['id']}"].mentions_me
    await sink.wait_until(lambda: adapter._sync is not None and adapter._sync.passes > passes)
    assert sink.cursors[f"discord:last:{fake.general}"] == missed["id"]
    after = await said(fake, sink, lena, "after the resume")
    assert sink.cursors[f"discord:last:{fake.general}"] == after.id


async def test_a_failed_commit_does_not_let_the_cursor_skip_the_message(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    max_ = fake.add_user("max")
    sink.fail_next = RuntimeError("disk full")
    lost = await fake.user_says(max_, "this commit fails")
    await sink.wait_until(lambda: sink.fail_next is None)
    later = await said(fake, sink, max_, "this one works")
    await sink.wait_until(lambda: f"discord:{lost['id']}" in sink.events)  # repaired by the backfill
    await sink.wait_until(lambda: sink.cursors.get(f"discord:last:{fake.general}") == later.id)
    assert [m.text for m in sink.messages() if m.author.user_id == max_["id"]] == [
        "this one works", "this commit fails"]


async def test_restart_delivers_missed_messages_once_with_the_cursor(fake: FakeDiscord, tmp_path: Any) -> None:
    sink = RecordingSink()
    first = make_adapter(fake, tmp_path)
    await first.start(sink)
    nina = fake.add_user("nina")
    seen = await said(fake, sink, nina, "while up")
    await first.stop()
    missed = [await fake.user_says(nina, f"while down {i}") for i in range(3)]
    second = make_adapter(fake, tmp_path)
    await second.start(sink)
    try:
        await sink.wait_until(lambda: all(f"discord:{m['id']}" in sink.events for m in missed))
        await sink.wait_until(lambda: second._sync is not None and second._sync.passes >= 1)
        assert sink.cursors[f"discord:last:{fake.general}"] == missed[-1]["id"]
        texts = [m.text for m in sink.messages() if m.author.user_id == nina["id"]]
        assert texts == [seen.text, "while down 0", "while down 1", "while down 2"]
    finally:
        await second.stop()


async def test_backfill_window_is_bounded_to_the_newest_messages(fake: FakeDiscord, tmp_path: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink()
    olga = fake.add_user("olga")
    first = make_adapter(fake, tmp_path, backfill_limit=3)
    await first.start(sink)
    await sink.wait_until(lambda: first._sync is not None and first._sync.passes >= 1)
    await first.stop()
    missed = [await fake.user_says(olga, f"gap {i}") for i in range(5)]
    second = make_adapter(fake, tmp_path, backfill_limit=3)
    with caplog.at_level(logging.WARNING, logger="paibot.discord"):
        await second.start(sink)
        try:
            await sink.wait_until(lambda: second._sync is not None and second._sync.passes >= 1)
        finally:
            await second.stop()
    assert [m.text for m in sink.messages()] == ["gap 2", "gap 3", "gap 4"]
    assert sink.cursors[f"discord:last:{fake.general}"] == missed[-1]["id"]
    assert any("backfill_limit" in r.getMessage() for r in caplog.records)


async def test_deletions_both_ways(running: Any, fake: FakeDiscord) -> None:
    adapter, sink = running
    kim = fake.add_user("kim")
    msg = await said(fake, sink, kim, "soon gone")
    await fake.delete(fake.general, msg.id)  # a member (or a moderator) deletes it
    event_id = f"discord:{msg.id}:delete"
    await sink.wait_until(lambda: event_id in sink.events)
    gone = sink.events[event_id]
    assert gone.deleted and gone.id == msg.id and gone.chat == msg.chat and gone.text == ""
    ref = await adapter.send(Outgoing(msg.chat, "a copy the bot posted"))
    await adapter.delete(ref)  # the bot deletes its own message (a relayed copy whose original went)
    assert fake.sent_by_bot() == []
    await adapter.delete(ref)  # already gone: nothing to do
