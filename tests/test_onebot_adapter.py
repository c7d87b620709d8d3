"""What the OneBot adapter does with a group, against the fake implementation (forward WebSocket): long
answers split, pacing per group against risk control, retcode errors mapped to retry or give up, the send
journal, history catch-up after a restart (including NapCat renumbering its messages), media under the
size limit, admins from group roles, and the CQ-string message format."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from adapters.onebot.adapter import OneBotAdapter
from adapters.onebot.config import OneBotSettings
from bot.errors import DeliveryError, DeliveryUncertain, PlatformUnavailable
from bot.events import Attachment, ChatRef, Outgoing, OutgoingFile, PersonRef
from bot.ports import AdapterEnv
from tests.fake_onebot import FakeOneBot
from tests.fakes import ManualClock
from tests.test_onebot_links import WaitingInbox, wait_identity

GROUP, OTHER = 445566, 778899
ALICE, BOB = 111, 222
CHAT = ChatRef("onebot", str(GROUP))


class Kit:
    def __init__(
        self, fake: FakeOneBot, adapter: OneBotAdapter, inbox: WaitingInbox, clock: ManualClock
    ) -> None:
        self.fake, self.adapter, self.inbox, self.clock = fake, adapter, inbox, clock

    async def restart_adapter(self, **over: Any) -> None:
        await self.adapter.stop()
        self.adapter = make_adapter(self.fake, self.clock, **over)
        await self.adapter.start(self.inbox)
        await wait_identity(self.adapter)


def make_adapter(fake: FakeOneBot, clock: ManualClock, **over: Any) -> OneBotAdapter:
    cfg: dict[str, Any] = {"enabled": True, "mode": "forward", "url": fake.ws_url, "send_interval_s": 0.0,
                           "group_per_minute": 0}  # fmt: skip
    cfg.update(over)
    return OneBotAdapter(
        OneBotSettings(**cfg), AdapterEnv("派", None, max_attachment_bytes=1000), clock=clock
    )


async def make_kit(fake: FakeOneBot | None = None, **over: Any) -> Kit:
    fake = fake or FakeOneBot()
    fake.group(GROUP, "读书会")
    fake.group(OTHER, "跑步群")
    for g in (GROUP, OTHER):
        fake.member(g, ALICE, "alice", card="爱丽丝", role="admin")
        fake.member(g, BOB, "bob")
    await fake.serve_ws()
    clock = ManualClock()
    adapter = make_adapter(fake, clock, **over)
    inbox = WaitingInbox()
    await adapter.start(inbox)
    await wait_identity(adapter)
    return Kit(fake, adapter, inbox, clock)


@pytest.fixture
async def kit() -> Any:
    k = await make_kit()
    try:
        yield k
    finally:
        await k.adapter.stop()
        await k.fake.close()


def out(text: str, **kw: Any) -> Outgoing:
    return Outgoing(chat=kw.pop("chat", CHAT), text=text, **kw)


# --------------------------------------------------------------------------- sending


async def test_a_long_answer_goes_out_in_parts_only_the_first_quoting() -> None:
    k = await make_kit(message_limit=60)
    try:
        text = "这一段说明很长。" * 20
        ref = await k.adapter.send(out(text, reply_to="42", mention_user_ids=(str(ALICE),)))
        sent = k.fake.sent
        assert len(sent) > 1 and ref.part_ids == tuple(str(s.message_id) for s in sent)
        texts = [
            "".join(seg["data"].get("text", "") for seg in s.segments if seg["type"] == "text") for s in sent
        ]
        assert all(len(t.strip()) <= 60 for t in texts) and "".join(t.strip() for t in texts) == text
        assert [seg["type"] for seg in sent[0].segments][:2] == ["reply", "at"]
        assert all(seg["type"] == "text" for s in sent[1:] for seg in s.segments)
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_messages_to_one_group_are_paced_other_groups_are_not_held_up() -> None:
    k = await make_kit(send_interval_s=2.0, group_per_minute=3)
    try:
        for i in range(4):
            await k.adapter.send(out(f"第{i}条"))
        # Each message after the first waited at least the interval; the fourth also waited for the minute.
        waits = k.clock.slept
        assert len(waits) >= 3 and all(w >= 2.0 for w in waits[:2]) and sum(waits) >= 59.99
        before = len(k.clock.slept)
        await k.adapter.send(out("另一个群", chat=ChatRef("onebot", str(OTHER))))
        assert len(k.clock.slept) == before  # another group's first message does not wait
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_all_chats_together_stay_under_the_global_cap() -> None:
    k = await make_kit(global_per_minute=2)
    try:
        await k.adapter.send(out("一"))
        await k.adapter.send(out("二", chat=ChatRef("onebot", str(OTHER))))
        assert k.clock.slept == []
        await k.adapter.send(out("三", chat=ChatRef("onebot", f"private:{ALICE}")))
        assert sum(k.clock.slept) >= 59.99  # the third message of the minute waited for the window
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_a_private_answer_goes_to_the_member() -> None:
    k = await make_kit()
    try:
        await k.adapter.send(
            out("你好", chat=ChatRef("onebot", f"private:{ALICE}"), mention_user_ids=(str(ALICE),))
        )
        (sent,) = k.fake.sent
        assert (sent.message_type, sent.peer) == ("private", ALICE)
        assert [s["type"] for s in sent.segments] == ["text"]  # no at in a private chat
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_recalls_both_ways_and_a_private_word(kit: Kit) -> None:
    """For pais (bot.relay): the bot recalls its own message, every part (delete_msg); a member's recall
    reaches the core as a deletion; send_direct writes to one member privately."""
    ref = await kit.adapter.send(out("第一段" * 10, chat=CHAT))
    await kit.adapter.delete(ref)
    recalls = [c for c in kit.fake.calls if c[0] == "delete_msg"]
    assert recalls == [("delete_msg", {"message_id": int(ref.message_id)})]
    assert int(ref.message_id) not in kit.fake.messages
    said = await kit.fake.post(GROUP, BOB, "说错了")
    await kit.fake.recall(said.message_id)
    own, message, gone = await kit.inbox.until(3)  # the bot's recall, bob's message, bob's recall
    assert message.text == "说错了" and not message.deleted
    assert own.deleted and own.from_me and own.id == ref.message_id
    assert gone.deleted and not gone.from_me and gone.id == str(said.message_id) and gone.chat.key == CHAT.key
    assert gone.author.user_id == str(BOB) and gone.text == ""
    with pytest.raises(DeliveryError):
        await kit.adapter.delete(ref)  # gone already: QQ refuses, the core logs it
    sent = await kit.adapter.send_direct(PersonRef("onebot", str(ALICE), "alice"), "你的链接码")
    assert sent.chat.chat_id == f"private:{ALICE}"
    assert (kit.fake.sent[-1].message_type, kit.fake.sent[-1].peer) == ("private", ALICE)


@pytest.mark.parametrize(
    ("retcode", "message", "error"),
    [(1400, "参数错误", DeliveryError), (1404, "不支持的API", DeliveryError),
     (200, "消息发送超时 timeout", DeliveryUncertain)],
)  # fmt: skip
async def test_retcodes_that_cannot_get_better_give_up_at_once(
    kit: Kit, retcode: int, message: str, error: type[Exception]
) -> None:
    kit.fake.fail("send_group_msg", retcode, message)
    with pytest.raises(error):
        await kit.adapter.send(out("hi"))
    assert [a for a, _ in kit.fake.calls].count("send_group_msg") == 1


async def test_another_failure_is_tried_once_more_after_a_pause(kit: Kit) -> None:
    kit.fake.fail("send_group_msg", 200, "发送消息失败")
    ref = await kit.adapter.send(out("hi"))
    assert ref.message_id == str(kit.fake.sent[0].message_id)
    assert max(kit.clock.slept, default=0) >= 5.0  # the pause before the second try
    kit.fake.fail("send_group_msg", 200, "发送消息失败", times=2)
    with pytest.raises(DeliveryError, match="twice"):
        await kit.adapter.send(out("again"))


async def test_a_send_while_disconnected_is_unavailable_and_sent_nothing(kit: Kit) -> None:
    await kit.fake.close()
    await asyncio.wait_for(_until(lambda: kit.adapter.link._channel is None), 10)  # type: ignore[union-attr]
    with pytest.raises(PlatformUnavailable):
        await kit.adapter.send(out("hi", idempotency_key="ev1"))


async def test_the_journal_skips_parts_delivered_before_a_crash() -> None:
    k = await make_kit(message_limit=50)
    try:
        o = out("第一部分说完了。" * 6 + "第二部分" * 10, idempotency_key="onebot:445566:abc")
        first = await k.adapter.send(o)
        assert len(first.part_ids) >= 2 and await k.adapter.delivery_attempted(o)
        # As if the process died after the first part: the journal holds only that one.
        key = next(c for c in k.inbox.cursors if c.startswith("onebot:sent:"))
        k.inbox.cursors[key] = '{"sent": ["%s"]}' % first.part_ids[0]
        k.fake.sent.clear()
        again = await k.adapter.send(o)
        assert len(k.fake.sent) == len(first.part_ids) - 1 and again.message_id == first.part_ids[0]
        assert not await k.adapter.delivery_attempted(out("never sent", idempotency_key="other"))
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_images_go_out_as_base64_image_segments(kit: Kit) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 20
    await kit.adapter.send(out("", reply_to="7", files=(OutgoingFile("chart.png", "image/png", png),)))
    (sent,) = kit.fake.sent
    assert [s["type"] for s in sent.segments] == ["reply", "image"]
    assert sent.segments[1]["data"]["file"].startswith("base64://")


# --------------------------------------------------------------------------- intake and catching up


async def test_a_group_first_heard_while_paibot_was_down_is_caught_up_too() -> None:
    k = await make_kit()
    try:
        await k.fake.post(GROUP, ALICE, "有人吗")
        await k.inbox.until(1)
        await k.adapter.stop()
        await k.fake.post(OTHER, BOB, "跑步群的第一条消息", push=False)
        await k.restart_adapter()
        events = await k.inbox.until(2)
        assert events[-1].chat.chat_id == str(OTHER) and events[-1].text == "跑步群的第一条消息"
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_a_catch_up_cut_short_is_resumed_though_live_talk_went_on() -> None:
    k = await make_kit()
    t0 = int(time.time()) - 3600
    try:
        await k.fake.post(GROUP, ALICE, "停机前", when=t0)
        await k.inbox.until(1)
        await k.adapter.stop()
        for i in range(3):
            await k.fake.post(GROUP, BOB, f"停机时{i}", when=t0 + 10 + i, push=False)
        k.fake.fail("get_group_msg_history", 200, "internal error")  # the first group's catch-up fails
        await k.restart_adapter()
        await k.fake.post(OTHER, ALICE, "之后很久的新消息", when=t0 + 1800)  # moves the cursor far on
        await k.inbox.until(2)
        await k.restart_adapter()
        texts = [e.text for e in await k.inbox.until(5)]
        assert sorted(texts[2:]) == ["停机时0", "停机时1", "停机时2"]
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_a_live_message_right_after_a_reconnect_does_not_hide_the_gap() -> None:
    k = await make_kit()
    t0 = int(time.time()) - 3600
    try:
        await k.fake.post(GROUP, ALICE, "停机前", when=t0)
        await k.inbox.until(1)
        await k.adapter.stop()
        await k.fake.post(GROUP, BOB, "停机时说的", when=t0 + 10, push=False)
        k.fake.fail("get_login_info", 200, "busy")  # no catch-up after this start...
        k.adapter = make_adapter(k.fake, k.clock)
        await k.adapter.start(k.inbox)
        await k.fake.post(OTHER, ALICE, "重连后马上来的", when=t0 + 1800)  # ...but live talk flows
        await k.inbox.until(2)
        await k.fake.drop_connections()  # the next connection catches up
        texts = [e.text for e in await k.inbox.until(3)]
        assert texts[-1] == "停机时说的"
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_after_a_restart_history_brings_what_was_missed_once_even_renumbered() -> None:
    k = await make_kit()
    try:
        for i in range(3):
            await k.fake.post(GROUP, ALICE, f"在线时第{i}条")
        await k.inbox.until(3)
        await k.adapter.stop()
        for i in range(30):  # said while paibot was down: more than one page of history
            await k.fake.post(GROUP, BOB, f"停机时第{i}条", push=False)
        k.fake.restart()  # NapCat restarted too: every message has a new id
        await k.restart_adapter()
        events = await k.inbox.until(33)
        texts = [e.text for e in events]
        assert len(texts) == len(set(texts)) == 33
        assert texts[3:] == [f"停机时第{i}条" for i in range(30)]  # in order
        # Every group of the account was looked at; the quiet one cost one call.
        history_calls = [p["group_id"] for a, p in k.fake.calls if a == "get_group_msg_history"]
        assert history_calls.count(OTHER) == 1 and history_calls.count(GROUP) == 2
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_without_history_the_gap_is_said_once_and_live_messages_still_flow() -> None:
    fake = FakeOneBot(history=False)
    k = await make_kit(fake)
    try:
        await fake.post(GROUP, ALICE, "第一条")
        await k.inbox.until(1)
        await k.restart_adapter()
        await fake.post(GROUP, ALICE, "第二条")
        assert [e.text for e in await k.inbox.until(2)] == ["第一条", "第二条"]
    finally:
        await k.adapter.stop()
        await fake.close()


async def test_the_string_message_format_both_ways() -> None:
    fake = FakeOneBot(message_format="string")
    k = await make_kit(fake, message_format="string")
    try:
        await fake.post(GROUP, ALICE, "[看这个] & 那个", at_bot=True)
        (event,) = await k.inbox.until(1)
        assert event.text == "@派 [看这个] & 那个" and event.mentions_me
        await k.adapter.send(out("[CQ:at,qq=all] 不会变成@全体", mention_user_ids=(str(ALICE),)))
        (sent,) = fake.sent
        assert [s["type"] for s in sent.segments] == ["at", "text"]
        assert sent.segments[0]["data"]["qq"] == str(ALICE)
    finally:
        await k.adapter.stop()
        await fake.close()


# --------------------------------------------------------------------------- media and admins


async def test_an_image_is_fetched_within_the_size_limit(kit: Kit) -> None:
    url = await kit.fake.media_url("A1.png", b"x" * 500)
    data = await kit.adapter.fetch_attachment(Attachment("image", "A1.png", "image/png", 500, url), 10_000)
    assert data == b"x" * 500
    big = await kit.fake.media_url("B.png", b"y" * 5000)
    with pytest.raises(DeliveryError, match="limit"):
        await kit.adapter.fetch_attachment(Attachment("image", "B.png", "image/png", 0, big), 10_000)
    kit.fake.media["C.jpg"] = b"z" * 10
    by_name = await kit.adapter.fetch_attachment(
        Attachment("image", "C.jpg", "image/jpeg", 0, "image:C.jpg"), 100
    )
    assert by_name == b"z" * 10


async def test_group_owners_and_admins_are_admins(kit: Kit) -> None:
    assert await kit.adapter.is_chat_admin(CHAT, PersonRef("onebot", str(ALICE), "爱丽丝"))
    assert not await kit.adapter.is_chat_admin(CHAT, PersonRef("onebot", str(BOB), "bob"))


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.01)
