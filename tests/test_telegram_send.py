"""Sending through the Telegram adapter: quoting, splitting, plain text, flood limits, order, edits, polls,
files, attachments, supergroup upgrades, and crash-safe resends. Against the fake Bot API server."""

from __future__ import annotations

import asyncio

import pytest

from adapters.telegram.flow import Pacing
from adapters.telegram.text import utf16_len
from bot.errors import DeliveryError
from bot.events import Attachment, ChatRef, Outgoing, OutgoingFile, Poll
from tests.fake_telegram import FakeTelegram, RecordingClock, RecordingSink, make_adapter

GROUP = -1001234567890
CHAT = ChatRef("telegram", str(GROUP))
ALICE = FakeTelegram.user(42, "Alice", "alice")


@pytest.fixture
async def fake():
    server = await FakeTelegram().start()
    server.chat(GROUP)
    yield server
    await server.close()


@pytest.fixture
def clock():
    return RecordingClock()


@pytest.fixture
async def adapter(fake, tmp_path, clock):
    a = make_adapter(fake, tmp_path, clock=clock)
    sink = RecordingSink()
    await a.start(sink)
    a.test_sink = sink  # type: ignore[attr-defined]
    yield a
    await a.stop()


async def test_reply_quotes_the_trigger_as_plain_text_without_link_preview(fake, adapter):
    trigger = await fake.message(GROUP, ALICE, "@pai_test_bot see https://example.org")
    ref = await adapter.send(Outgoing(CHAT, "Sure: https://example.org is the page", reply_to=str(trigger["message_id"])))
    (sent,) = fake.sent
    assert sent["reply_to_message"]["message_id"] == trigger["message_id"]
    params = sent["_params"]
    assert params["reply_parameters"]["allow_sending_without_reply"] is True
    assert params["link_preview_options"] == {"is_disabled": True}
    assert "parse_mode" not in params
    assert ref.message_id == str(sent["message_id"]) and ref.part_ids == (ref.message_id,)
    assert ref.url == f"https://t.me/c/1234567890/{sent['message_id']}"


async def test_reply_to_a_deleted_message_is_still_delivered(fake, adapter):
    await adapter.send(Outgoing(CHAT, "answer", reply_to="99999"))
    assert fake.texts_to(GROUP) == ["answer"]


async def test_a_10000_character_answer_is_split_on_boundaries(fake, adapter):
    paragraphs = [f"Paragraph {i}: " + "word " * 190 for i in range(10)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert len(text) >= 9_500
    ref = await adapter.send(Outgoing(CHAT, text, reply_to=None))
    parts = fake.texts_to(GROUP)
    assert len(parts) == 3
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)  # cut between paragraphs, not inside one
    assert "\n\n".join(parts) == text
    assert ref.part_ids == tuple(str(m["message_id"]) for m in fake.sent)


async def test_emoji_are_counted_as_two_utf16_units_when_splitting(fake, adapter):
    text = "😀" * 5000  # 10,000 UTF-16 units although Python counts 5,000 characters
    await adapter.send(Outgoing(CHAT, text))
    parts = fake.texts_to(GROUP)
    assert [utf16_len(p) for p in parts] == [4096, 4096, 1808]
    assert "".join(parts) == text


async def test_markdown_hostile_model_output_is_delivered_verbatim(fake, adapter):
    hostile = "*bold _nested [link](http://x.y) `code` 1.5! (a|b) {c} #tag -x +y =z ~s~ >q \\ end_of_line*"
    await adapter.send(Outgoing(CHAT, hostile))
    assert fake.texts_to(GROUP) == [hostile]
    assert "parse_mode" not in fake.sent[0]["_params"]


async def test_429_retry_after_is_honoured_and_the_message_sent_once(fake, adapter, clock):
    fake.flood("sendMessage", retry_after=1)
    await adapter.send(Outgoing(CHAT, "patience"))
    attempts = [m for m, _ in fake.calls if m == "sendMessage"]
    assert len(attempts) == 2
    assert fake.texts_to(GROUP) == ["patience"]
    assert sum(clock.slept) >= 1.0


async def test_order_per_chat_is_kept_across_a_flood_wait(fake, adapter):
    fake.flood("sendMessage", retry_after=1)
    await asyncio.gather(*(adapter.send(Outgoing(CHAT, f"part {i}")) for i in range(5)))
    assert fake.texts_to(GROUP) == [f"part {i}" for i in range(5)]


async def test_a_chat_in_flood_wait_does_not_block_other_chats(fake, adapter):
    other = -1009876
    fake.chat(other)
    fake.flood("sendMessage", retry_after=2)
    slow = asyncio.create_task(adapter.send(Outgoing(CHAT, "slow")))
    await fake.wait_until(lambda: any(m == "sendMessage" for m, _ in fake.calls))
    await adapter.send(Outgoing(ChatRef("telegram", str(other)), "fast"))
    assert fake.texts_to(other) == ["fast"] and fake.texts_to(GROUP) == []
    await slow
    assert fake.texts_to(GROUP) == ["slow"]


async def test_group_pacing_spreads_messages_at_telegrams_limit(fake, tmp_path):
    clock = RecordingClock()
    a = make_adapter(fake, tmp_path, clock=clock, pacing=Pacing(chat_interval_s=0.2, group_per_minute=20))
    await a.start(RecordingSink())
    try:
        for i in range(3):
            await a.send(Outgoing(CHAT, f"n{i}"))
    finally:
        await a.stop()
    assert fake.texts_to(GROUP) == ["n0", "n1", "n2"]
    assert len([s for s in clock.slept if s > 0]) >= 2  # waited before the 2nd and 3rd message


async def test_permanent_refusal_becomes_delivery_error(fake, adapter):
    fake.fail("sendMessage", 403, "Forbidden: bot was kicked from the supergroup chat")
    with pytest.raises(DeliveryError, match="kicked"):
        await adapter.send(Outgoing(CHAT, "hello?"))


async def test_empty_text_is_refused_before_calling_telegram(fake, adapter):
    with pytest.raises(DeliveryError):
        await adapter.send(Outgoing(CHAT, "   \n "))
    assert not any(m == "sendMessage" for m, _ in fake.calls)


async def test_edit_replaces_text_and_ignores_not_modified(fake, adapter):
    ref = await adapter.send(Outgoing(CHAT, "thinking"))
    await adapter.edit(ref, "the full answer")
    await adapter.edit(ref, "the full answer")  # Telegram says "not modified": not an error
    assert fake.edits == [{"chat_id": GROUP, "message_id": int(ref.message_id), "text": "the full answer"}]
    assert fake.chats[GROUP].messages[int(ref.message_id)]["text"] == "the full answer"


async def test_queued_edits_of_one_message_coalesce_to_the_newest(fake, adapter):
    ref = await adapter.send(Outgoing(CHAT, "v0"))
    fake.flood("editMessageText", retry_after=1)
    first = asyncio.create_task(adapter.edit(ref, "v1"))
    await fake.wait_until(lambda: any(m == "editMessageText" for m, _ in fake.calls))
    await asyncio.gather(first, adapter.edit(ref, "v2"), adapter.edit(ref, "v3"))
    texts = [e["text"] for e in fake.edits]
    assert texts[-1] == "v3" and "v2" not in texts


async def test_typing_action_and_never_raises(fake, adapter):
    await adapter.typing(CHAT)
    assert fake.actions[0]["action"] == "typing" and int(fake.actions[0]["chat_id"]) == GROUP
    await adapter.typing(ChatRef("telegram", "-100404"))  # unknown chat: swallowed (best effort)


async def test_native_poll(fake, adapter):
    trigger = await fake.message(GROUP, ALICE, "/poll lunch?")
    out = Outgoing(CHAT, "", reply_to=str(trigger["message_id"]),
                   poll=Poll("Lunch where?", ("Pizza", "Noodles", "Salad"), multiple=True, close_after_s=60))
    ref = await adapter.send(out)
    (sent,) = fake.sent
    assert sent["poll"]["question"] == "Lunch where?"
    assert [o["text"] for o in sent["poll"]["options"]] == ["Pizza", "Noodles", "Salad"]
    assert sent["poll"]["allows_multiple_answers"] is True and sent["poll"]["is_anonymous"] is False
    assert sent["_params"]["open_period"] == 60
    assert sent["reply_to_message"]["message_id"] == trigger["message_id"]
    assert ref.message_id == str(sent["message_id"])


async def test_poll_with_one_option_is_refused(fake, adapter):
    with pytest.raises(DeliveryError):
        await adapter.send(Outgoing(CHAT, "", poll=Poll("Only?", ("yes",))))


async def test_files_are_uploaded_after_the_text(fake, adapter):
    out = Outgoing(CHAT, "Here is the export", files=(OutgoingFile("export.csv", "text/csv", b"a,b\n1,2\n"),
                                                      OutgoingFile("chart.png", "image/png", b"\x89PNG fake")))
    ref = await adapter.send(out)
    kinds = [next(k for k in ("text", "document", "photo") if k in m) for m in fake.sent]
    assert kinds == ["text", "document", "photo"]
    assert fake.files[fake.sent[1]["document"]["file_id"]][1] == b"a,b\n1,2\n"
    assert fake.sent[1]["document"]["file_name"] == "export.csv"
    assert len(ref.part_ids) == 3


async def test_fetch_attachment_downloads_through_getfile(fake, adapter):
    fake.add_file("ph1", b"\xff\xd8jpeg bytes", "photos/file_1.jpg")
    data = await adapter.fetch_attachment(Attachment("image", "p.jpg", "image/jpeg", 13, "ph1"), max_bytes=1000)
    assert data == b"\xff\xd8jpeg bytes"


async def test_fetch_attachment_refuses_files_over_the_limit(fake, adapter):
    fake.add_file("big", b"x" * 5000)
    with pytest.raises(DeliveryError, match="limit"):
        await adapter.fetch_attachment(Attachment("file", "big.bin", "application/octet-stream", 0, "big"), 1000)
    assert not any(m == "getFile" and p.get("file_id") == "nope" for m, p in fake.calls)
    with pytest.raises(DeliveryError):
        await adapter.fetch_attachment(Attachment("file", "gone.bin", "application/octet-stream", 0, "nope"), 1000)


async def test_admin_check_uses_chat_member_status(fake, adapter):
    from bot.events import PersonRef

    fake.admins.add((GROUP, 42))
    assert await adapter.is_chat_admin(CHAT, PersonRef("telegram", "42", "Alice")) is True
    assert await adapter.is_chat_admin(CHAT, PersonRef("telegram", "43", "Bob")) is False


async def test_thread_is_used_for_forum_topics(fake, adapter):
    fake.chats[GROUP].is_forum = True
    topic = await fake.message(GROUP, ALICE, "topic starter")
    await adapter.send(Outgoing(CHAT, "in the topic", thread=str(topic["message_id"])))
    assert fake.sent[0]["message_thread_id"] == topic["message_id"]


async def test_a_repeated_send_with_the_same_idempotency_key_is_not_posted_twice(fake, adapter):
    out = Outgoing(CHAT, "only once", idempotency_key="telegram:-1001234567890:16")
    first = await adapter.send(out)
    again = await adapter.send(out)
    assert fake.texts_to(GROUP) == ["only once"]
    assert again.message_id == first.message_id
    await adapter.send(Outgoing(CHAT, "a different answer", idempotency_key="telegram:-1001234567890:16"))
    assert fake.texts_to(GROUP) == ["only once", "a different answer"]


async def test_resend_after_partial_delivery_sends_only_the_rest(fake, tmp_path):
    sink = RecordingSink()
    a = make_adapter(fake, tmp_path)
    await a.start(sink)
    text = "A" * 4000 + "\n\n" + "B" * 4000 + "\n\n" + "C" * 100
    out = Outgoing(CHAT, text, idempotency_key="telegram:-1001234567890:18")
    try:
        # Let the first part through, then refuse the second one.
        original = fake._m_sendMessage
        count = 0

        async def flaky(params):
            nonlocal count
            count += 1
            if count == 2:
                from tests.fake_telegram import ApiError

                raise ApiError(403, "Forbidden: bot is not a member of the supergroup chat")
            return await original(params)

        fake._m_sendMessage = flaky  # type: ignore[method-assign]
        with pytest.raises(DeliveryError):
            await a.send(out)
        assert [p[0] for p in fake.texts_to(GROUP)] == ["A"]
    finally:
        await a.stop()
    # A new process (same data directory) resends the same answer: only B and C go out.
    b = make_adapter(fake, tmp_path)
    await b.start(sink)
    try:
        ref = await b.send(out)
    finally:
        await b.stop()
    assert [p[0] for p in fake.texts_to(GROUP)] == ["A", "B", "C"]
    assert len(ref.part_ids) == 3 and ref.message_id == str(fake.sent[0]["message_id"])


# --------------------------------------------------------------------------- supergroup upgrade


async def test_upgraded_group_keeps_its_key_and_replies_reach_the_new_chat(fake, tmp_path):
    old, new = -4242, -1004242
    fake.chat(old, "group", title="Family")
    sink = RecordingSink()
    a = make_adapter(fake, tmp_path)
    await a.start(sink)
    try:
        await fake.message(old, ALICE, "before the upgrade")
        await fake.message(old, ALICE, migrate_to_chat_id=new)
        fake.chat(new, "supergroup", title="Family")
        fake.chats[old].migrated_to = new
        await fake.message(new, ALICE, migrate_from_chat_id=old)
        await fake.message(new, ALICE, "after the upgrade")
        before, after = await sink.wait_for(2)
        assert before.chat.key == after.chat.key == f"telegram:{old}"
        assert after.url.startswith("https://t.me/c/4242/")
        await a.send(Outgoing(after.chat, "still me"))
    finally:
        await a.stop()
    assert fake.texts_to(new) == ["still me"]
    assert sink.cursors[f"telegram:migrate:{new}"] == str(old)


async def test_send_to_an_upgraded_group_follows_the_migration_error(fake, tmp_path):
    old, new = -5151, -1005151
    fake.chat(old, "group")
    fake.chat(new, "supergroup")
    fake.chats[old].migrated_to = new
    sink = RecordingSink()
    a = make_adapter(fake, tmp_path)
    await a.start(sink)
    try:
        await a.send(Outgoing(ChatRef("telegram", str(old)), "first"))
        await a.send(Outgoing(ChatRef("telegram", str(old)), "second"))
        await fake.message(new, ALICE, "hi from the supergroup")
        (msg,) = await sink.wait_for(1)
    finally:
        await a.stop()
    assert fake.texts_to(new) == ["first", "second"]
    assert msg.chat.chat_id == str(old)
    sends_to_old = [p for m, p in fake.calls if m == "sendMessage" and int(p["chat_id"]) == old]
    assert len(sends_to_old) == 1  # learned once, remembered after
