"""The Telegram adapter against the fake Bot API server, through unmodified python-telegram-bot.

Intake: what each kind of update becomes, and that an update is acknowledged (getUpdates offset) only after
the inbox committed it. Start-up: token, privacy mode, commands.
"""

from __future__ import annotations

import logging
import socket

import pytest

from bot.errors import CredentialsRejected, PlatformUnavailable
from bot.events import ChatRef, Outgoing
from tests.fake_telegram import FakeTelegram, RecordingClock, RecordingSink, make_adapter

GROUP = -1001234567890
ALICE = FakeTelegram.user(42, "Alice", "alice")
BOB = FakeTelegram.user(43, "Bob")


@pytest.fixture
async def fake():
    server = await FakeTelegram().start()
    yield server
    await server.close()


@pytest.fixture
async def running(fake, tmp_path):
    sink = RecordingSink()
    adapter = make_adapter(fake, tmp_path)
    await adapter.start(sink)
    yield adapter, sink
    await adapter.stop()


# --------------------------------------------------------------------------- start-up


async def test_start_checks_token_registers_commands_and_leaves_webhook_mode(fake, running):
    methods = [m for m, _ in fake.calls]
    assert methods[0] == "getMe"
    assert "deleteWebhook" in methods
    assert [c["command"] for c in fake.commands] == ["help", "remind"]
    assert fake.commands[0]["description"] == "What I can do"
    adapter, _ = running
    assert adapter.me.username == "pai_test_bot"


async def test_invalid_token_stops_start_with_an_operator_hint_and_no_token_in_it(fake, tmp_path):
    adapter = make_adapter(fake, tmp_path, token="999:wrong-secret-token")
    with pytest.raises(CredentialsRejected) as err:
        await adapter.start(RecordingSink())
    text = str(err.value)
    assert "BotFather" in text and "adapters.telegram.token" in text
    assert "wrong-secret-token" not in text
    assert not any(m == "getUpdates" for m, _ in fake.calls)


async def test_a_404_on_getme_is_a_rejected_token_too(fake, tmp_path):
    fake.fail("getMe", 404, "Not Found")  # what Telegram answers for a malformed token
    with pytest.raises(CredentialsRejected, match="BotFather"):
        await make_adapter(fake, tmp_path).start(RecordingSink())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_bot_api_is_reported_by_url_and_a_later_start_connects(tmp_path):
    """python-telegram-bot marks a Bot initialised before its getMe: after a failed start, the next start
    must not reuse that Bot (it used to fail with "Bot is not properly initialized")."""
    server = FakeTelegram()
    server.port = port = closed_port()  # nothing listens there yet
    adapter = make_adapter(server, tmp_path)
    sink = RecordingSink()
    with pytest.raises(PlatformUnavailable) as err:
        await adapter.start(sink)
    assert f"cannot reach the Telegram Bot API at http://127.0.0.1:{port}" in str(err.value)
    assert server.token not in str(err.value)
    await server.start(port)  # the platform is back
    try:
        await adapter.start(sink)
        await server.message(GROUP, ALICE, "back online")
        (msg,) = await sink.wait_for(1)
        assert msg.text == "back online"
        await adapter.stop()
    finally:
        await server.close()


@pytest.mark.parametrize("code", [500, 502, 503])
async def test_a_server_error_on_getme_is_an_outage_not_a_refusal(fake, tmp_path, code):
    fake.fail("getMe", code, "Internal Server Error")
    adapter = make_adapter(fake, tmp_path)
    with pytest.raises(PlatformUnavailable, match="Telegram Bot API"):
        await adapter.start(RecordingSink())
    await adapter.start(RecordingSink())  # answered the next time
    await adapter.stop()


async def test_an_outage_after_getme_during_start_up_is_an_outage_too(fake, tmp_path):
    fake.fail("deleteWebhook", 502, "Bad Gateway")
    adapter = make_adapter(fake, tmp_path)
    with pytest.raises(PlatformUnavailable):
        await adapter.start(RecordingSink())
    sink = RecordingSink()
    await adapter.start(sink)
    await fake.message(GROUP, ALICE, "hello")
    await sink.wait_for(1)
    await adapter.stop()


async def test_privacy_mode_is_reported_with_how_to_turn_it_off(tmp_path, caplog):
    server = await FakeTelegram(privacy=True).start()
    try:
        adapter = make_adapter(server, tmp_path)
        with caplog.at_level(logging.WARNING, logger="paibot.telegram"):
            await adapter.start(RecordingSink())
        await adapter.stop()
    finally:
        await server.close()
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "privacy mode is ON" in warning and "/setprivacy" in warning and "Disable" in warning
    assert "add it again" in warning


async def test_no_privacy_warning_when_the_bot_reads_all_messages(fake, tmp_path, caplog):
    adapter = make_adapter(fake, tmp_path)
    with caplog.at_level(logging.WARNING, logger="paibot.telegram"):
        await adapter.start(RecordingSink())
    await adapter.stop()
    assert not any("privacy" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- what updates become


async def test_mention_entity_with_utf16_offsets_after_emoji(fake, running):
    _, sink = running
    text = "😀😀 @pai_test_bot what's up?"
    # "😀😀 " is 5 UTF-16 units, although Python counts 3 characters.
    await fake.message(GROUP, ALICE, text, entities=[{"type": "mention", "offset": 5, "length": 13}])
    (msg,) = await sink.wait_for(1)
    assert msg.mentions_me is True
    assert msg.text == text
    assert msg.chat == ChatRef("telegram", str(GROUP), title=f"Chat {GROUP}")
    assert msg.author.user_id == "42" and msg.author.display_name == "Alice"
    assert msg.url == f"https://t.me/c/1234567890/{msg.id}"
    assert msg.event_id == f"telegram:{GROUP}:{msg.id}"


async def test_mention_of_someone_else_and_plain_messages_do_not_mention_me(fake, running):
    _, sink = running
    await fake.message(GROUP, ALICE, "@bob_bot hi", entities=[{"type": "mention", "offset": 0, "length": 8}])
    await fake.message(GROUP, BOB, "just chatting")
    msgs = await sink.wait_for(2)
    assert [m.mentions_me for m in msgs] == [False, False]
    assert [m.text for m in msgs] == ["@bob_bot hi", "just chatting"]


async def test_text_mention_of_the_bot(fake, running):
    _, sink = running
    bot_user = {**fake.bot_user}
    await fake.message(GROUP, ALICE, "Pai, help", entities=[{"type": "text_mention", "offset": 0, "length": 3,
                                                             "user": bot_user}])
    (msg,) = await sink.wait_for(1)
    assert msg.mentions_me


async def test_commands_addressed_to_us_or_another_bot(fake, running):
    _, sink = running
    await fake.message(GROUP, ALICE, "/help@pai_test_bot", entities=[{"type": "bot_command", "offset": 0, "length": 18}])
    await fake.message(GROUP, ALICE, "/help@other_bot", entities=[{"type": "bot_command", "offset": 0, "length": 15}])
    await fake.message(GROUP, ALICE, "/help", entities=[{"type": "bot_command", "offset": 0, "length": 5}])
    msgs = await sink.wait_for(3)
    assert [m.mentions_me for m in msgs] == [True, False, False]


async def test_reply_to_the_bot_carries_the_quoted_text_and_author(fake, running):
    adapter, sink = running
    fake.chat(GROUP)
    ref = await adapter.send(Outgoing(ChatRef("telegram", str(GROUP)), "I am the bot's earlier answer"))
    original = fake.chats[GROUP].messages[int(ref.message_id)]
    await fake.message(GROUP, ALICE, "thanks!", reply_to_message=original)
    (msg,) = await sink.wait_for(1)
    assert msg.reply_to is not None
    assert msg.reply_to.message_id == ref.message_id
    assert msg.reply_to.text == "I am the bot's earlier answer"
    assert msg.reply_to.author is not None and msg.reply_to.author.user_id == str(adapter.me.id)
    assert msg.reply_to.author.is_bot


async def test_private_chat_is_direct(fake, running):
    _, sink = running
    fake.chat(42, "private", title="Alice")
    await fake.message(42, ALICE, "hello there")
    (msg,) = await sink.wait_for(1)
    assert msg.is_direct and msg.url == ""


async def test_forum_topic_becomes_the_thread(fake, running):
    _, sink = running
    fake.chat(GROUP, is_forum=True, username="paigroup")
    await fake.message(GROUP, ALICE, "in a topic", message_thread_id=7, is_topic_message=True)
    await fake.message(GROUP, ALICE, "in general")
    topic, general = await sink.wait_for(2)
    assert topic.thread == "7" and general.thread is None
    assert topic.url == f"https://t.me/paigroup/{topic.id}"


async def test_photo_with_caption_becomes_an_image_attachment(fake, running):
    _, sink = running
    photo = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 60, "file_size": 900},
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 853, "file_size": 90_000},
    ]
    await fake.message(GROUP, ALICE, photo=photo, caption="our cat @pai_test_bot",
                       caption_entities=[{"type": "mention", "offset": 8, "length": 13}])
    (msg,) = await sink.wait_for(1)
    assert msg.text == "our cat @pai_test_bot" and msg.mentions_me
    (att,) = msg.attachments
    assert (att.kind, att.mime, att.size, att.source) == ("image", "image/jpeg", 90_000, "big")


async def test_service_messages_are_acknowledged_but_not_events(fake, running):
    _, sink = running
    await fake.message(GROUP, ALICE, new_chat_members=[BOB])
    await fake.message(GROUP, ALICE, "real text")
    (msg,) = await sink.wait_for(1)
    assert msg.text == "real text"
    await fake.wait_until(lambda: fake.confirmed_offset >= 2 and not fake.updates)


async def test_edits_are_new_events_marked_edited(fake, running):
    _, sink = running
    original = await fake.message(GROUP, ALICE, "teh answer")
    await fake.push("edited_message", {**original, "text": "the answer", "edit_date": original["date"] + 5})
    first, edit = await sink.wait_for(2)
    assert edit.edited and edit.id == first.id and edit.event_id != first.event_id
    assert edit.text == "the answer"


async def test_channel_sender_in_group_is_the_author(fake, running):
    _, sink = running
    channel = {"id": -1009999, "type": "channel", "title": "News"}
    await fake.message(GROUP, ALICE, "posted as channel", sender_chat=channel)
    (msg,) = await sink.wait_for(1)
    assert msg.author.user_id == "-1009999" and msg.author.display_name == "News"


# --------------------------------------------------------------------------- acknowledgement


class AuditingSink(RecordingSink):
    """Checks, at every commit, that Telegram has not been told to drop these updates yet."""

    def __init__(self, fake: FakeTelegram) -> None:
        super().__init__()
        self.fake = fake
        self.violations: list[str] = []

    async def submit(self, events, *, cursor_key=None, cursor=None):  # type: ignore[override]
        if cursor_key == "telegram:offset" and cursor is not None:
            pending = {u["update_id"] for u in self.fake.updates}
            if self.fake.confirmed_offset >= int(cursor):
                self.violations.append(f"offset {cursor} confirmed before commit")
            if not pending:
                self.violations.append("batch no longer pending at commit time")
        return await super().submit(events, cursor_key=cursor_key, cursor=cursor)


async def test_updates_are_acknowledged_only_after_commit(fake, tmp_path):
    sink = AuditingSink(fake)
    sink.fail_next = 2  # the inbox fails twice: the batch must be fetched again, not skipped
    clock = RecordingClock()
    adapter = make_adapter(fake, tmp_path, clock=clock)
    for i in range(5):
        await fake.message(GROUP, ALICE, f"m{i}")
    await adapter.start(sink)
    try:
        msgs = await sink.wait_for(5)
        await fake.wait_until(lambda: fake.confirmed_offset == 6)
    finally:
        await adapter.stop()
    assert [m.text for m in msgs] == [f"m{i}" for i in range(5)]
    assert sink.violations == []
    assert sink.cursors["telegram:offset"] == "6"
    assert len(clock.slept) >= 2  # backed off after each failed commit instead of spinning


async def test_restart_resumes_from_the_committed_offset_without_duplicates(fake, tmp_path):
    sink = RecordingSink()
    first = make_adapter(fake, tmp_path)
    await first.start(sink)
    await fake.message(GROUP, ALICE, "before restart")
    await sink.wait_for(1)
    await first.stop()
    await fake.message(GROUP, ALICE, "while down")
    second = make_adapter(fake, tmp_path)
    await second.start(sink)
    try:
        await fake.message(GROUP, ALICE, "after restart")
        msgs = await sink.wait_for(3)
    finally:
        await second.stop()
    assert [m.text for m in msgs] == ["before restart", "while down", "after restart"]
    offsets = [int(p.get("offset") or 0) for m, p in fake.calls if m == "getUpdates"]
    assert offsets == sorted(offsets)  # never asked for anything already acknowledged
    assert sum(n for n, key, _ in sink.submits if key == "telegram:offset") == 3


async def test_a_batch_replayed_after_a_crash_is_not_taken_twice(fake, tmp_path):
    # Simulate a crash after the commit but before the next getUpdates acknowledged the batch.
    sink = RecordingSink()
    await fake.message(GROUP, ALICE, "once")
    adapter = make_adapter(fake, tmp_path)
    await adapter.start(sink)
    await sink.wait_for(1)
    await adapter.stop()
    sink.cursors.pop("telegram:offset")  # the offset write "was lost": Telegram re-delivers the batch
    again = make_adapter(fake, tmp_path)
    await again.start(sink)
    try:
        await fake.wait_until(lambda: fake.confirmed_offset >= 2)
    finally:
        await again.stop()
    assert [m.text for m in sink.messages] == ["once"]


async def test_malformed_updates_are_skipped_and_acknowledged(fake, running):
    _, sink = running
    bad = await fake.push_raw({"message": {"message_id": 1, "date": "not a date", "chat": "nope"}})
    await fake.message(GROUP, ALICE, "after the bad one")
    (msg,) = await sink.wait_for(1)
    assert msg.text == "after the bad one"
    await fake.wait_until(lambda: fake.confirmed_offset > bad + 1)


async def test_network_errors_back_off_with_growing_jittered_delays(fake, tmp_path):
    clock = RecordingClock()
    fake.fail("getUpdates", 502, "Bad Gateway", times=3)
    sink = RecordingSink()
    adapter = make_adapter(fake, tmp_path, clock=clock)
    await adapter.start(sink)
    try:
        await fake.message(GROUP, ALICE, "eventually")
        await sink.wait_for(1)
    finally:
        await adapter.stop()
    waits = clock.slept[:3]
    assert len(waits) == 3 and all(w > 0 for w in waits)
    assert waits[2] > waits[0]  # equal jitter: 3rd delay is in [2b, 4b], 1st in [b/2, b]


async def test_another_poller_conflict_is_logged_and_retried(fake, tmp_path, caplog):
    fake.fail("getUpdates", 409, "Conflict: terminated by other getUpdates request; make sure that only one bot "
                                 "instance is running")
    sink = RecordingSink()
    adapter = make_adapter(fake, tmp_path)
    with caplog.at_level(logging.ERROR, logger="paibot.telegram"):
        await adapter.start(sink)
        try:
            await fake.message(GROUP, ALICE, "still arrives")
            await sink.wait_for(1)
        finally:
            await adapter.stop()
    assert any("another process polls" in r.getMessage() for r in caplog.records)
