"""The WeCom AI bot adapter against a fake WeCom that encrypts and signs like the real one: the callback
crypto, URL verification, text/mixed/quote messages in groups and direct chats, answers through the
stream-refresh protocol (shown while written) or the response_url, and what cannot be delivered."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters.wecom.adapter import WeComAdapter
from adapters.wecom.config import WeComSettings
from adapters.wecom.crypto import CryptoError, WeComCrypto, aes_key
from bot.errors import DeliveryError
from bot.events import Attachment, ChatRef, Outgoing
from bot.ports import AdapterEnv
from bot.testing.inbox import MemoryKeyValueStore
from tests.fake_wecom import FakeWeCom, new_aes_key
from tests.fakes import ManualClock, RecordingInbox

GROUP = "wrkSFfCgAAAA"


# --------------------------------------------------------------------------- crypto


def test_the_adapter_and_the_fake_read_each_others_ciphertext() -> None:
    fake = FakeWeCom()
    crypto = WeComCrypto(fake.token, fake.aes)
    for text in ("", "a", "x" * 31, "中文消息" * 20, '{"msgtype": "text"}'):
        assert crypto.decrypt(fake.seal(text)) == text
        assert fake.open_(crypto.encrypt(text)) == text


def test_ciphertext_is_padded_to_32_bytes_like_wecom_does() -> None:
    import base64

    crypto = WeComCrypto("t", new_aes_key())
    for n in range(0, 70):
        assert len(base64.b64decode(crypto.encrypt("x" * n))) % 32 == 0


def test_signatures_and_tampering_are_caught() -> None:
    fake = FakeWeCom()
    crypto = WeComCrypto(fake.token, fake.aes)
    ct = fake.seal("hello")
    crypto.verify(fake.sign("1", "n", ct), "1", "n", ct)
    with pytest.raises(CryptoError):
        crypto.verify(fake.sign("1", "n", ct), "2", "n", ct)
    tampered = ct[:-8] + ("A" if ct[-8] != "A" else "B") + ct[-7:]
    with pytest.raises(CryptoError):
        crypto.decrypt(tampered)
    with pytest.raises(CryptoError, match="another receiver"):
        WeComCrypto(fake.token, fake.aes, receive_id="corp").decrypt(ct)


def test_a_wrong_encoding_aes_key_is_refused() -> None:
    with pytest.raises(CryptoError):
        aes_key("short")
    with pytest.raises(CryptoError):
        aes_key("!" * 43)


# --------------------------------------------------------------------------- the adapter


class Kit:
    def __init__(
        self, fake: FakeWeCom, adapter: WeComAdapter, inbox: RecordingInbox, clock: ManualClock
    ) -> None:
        self.fake, self.adapter, self.inbox, self.clock = fake, adapter, inbox, clock


async def make_kit(inbox: RecordingInbox | None = None, clock: ManualClock | None = None,
                   fake: FakeWeCom | None = None, store: Any = None) -> Kit:  # fmt: skip
    fake = fake or FakeWeCom()
    clock = clock or ManualClock()
    cfg = WeComSettings(
        enabled=True, token=fake.token, encoding_aes_key=fake.aes, port=0, mention_name="AI助手"
    )
    env = AdapterEnv("派", None, max_attachment_bytes=10_000, store=store)
    adapter = WeComAdapter(cfg, env, clock=clock)
    inbox = inbox or RecordingInbox()
    await adapter.start(inbox)
    if not fake.callback_url:
        await fake.start(adapter.where)
    fake.callback_url = adapter.where
    return Kit(fake, adapter, inbox, clock)


@pytest.fixture
async def kit() -> Any:
    k = await make_kit()
    yield k
    await k.adapter.stop()
    await k.fake.close()


def reply_to(k: Kit, conv: Any, text: str, **kw: Any) -> Outgoing:
    event = k.inbox.events[f"wecom:{conv.msgid}"]
    return Outgoing(
        chat=event.chat, text=text, reply_to=event.id, mention_user_ids=(event.author.user_id,), **kw
    )


async def test_the_callback_url_verifies_and_a_wrong_token_is_refused_once(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    status, echoed = await kit.fake.verify_url()
    assert status == 200 and echoed.startswith("echo-")
    caplog.set_level(logging.ERROR, "paibot.wecom")
    for _ in range(3):
        status, _ = await kit.fake.verify_url(token="not-the-token")
        assert status == 403
    refusals = [r for r in caplog.records if "refused a callback" in r.getMessage()]
    assert len(refusals) == 1 and kit.fake.token not in caplog.text


async def test_a_group_mention_becomes_an_event_and_opens_a_stream(kit: Kit) -> None:
    conv = await kit.fake.send(kit.fake.message("@AI助手 周报写好了吗", chat=GROUP, user="lisi"))
    (event,) = kit.inbox.in_order()
    assert event.chat.key == f"wecom:{GROUP}" and event.author.key == "wecom:lisi"
    assert event.mentions_me and not event.is_direct and event.text == "@派 周报写好了吗"
    assert conv.first == {"msgtype": "stream", "stream": {"id": conv.first["stream"]["id"], "finish": False,
                                                          "content": ""}}  # fmt: skip


async def test_an_answer_is_shown_while_it_is_written_then_finished(kit: Kit) -> None:
    conv = await kit.fake.send(kit.fake.message("讲讲这个项目", user="wangwu"))
    ref = await kit.adapter.send(reply_to(kit, conv, "这个项目", streaming=True))
    await until(lambda: "这个项目" in conv.shown)
    await kit.adapter.edit(ref, "这个项目分三期")
    await until(lambda: "这个项目分三期" in conv.shown)
    await kit.adapter.finish_edit(ref, "这个项目分三期，第一期已上线。")
    await asyncio.wait_for(conv.done.wait(), 10)
    assert conv.finished and conv.shown[-1] == "这个项目分三期，第一期已上线。"
    seen = [s for i, s in enumerate(conv.shown) if s and (i == 0 or s != conv.shown[i - 1])]
    assert seen == ["这个项目", "这个项目分三期", "这个项目分三期，第一期已上线。"]
    with pytest.raises(DeliveryError):  # closed: nothing changes it any more
        await kit.adapter.edit(ref, "改不了")


async def test_an_ordinary_answer_finishes_the_stream_at_once(kit: Kit) -> None:
    conv = await kit.fake.send(kit.fake.message("几点开会", user="wangwu"))
    await kit.adapter.send(reply_to(kit, conv, "下午三点。"))
    await asyncio.wait_for(conv.done.wait(), 10)
    assert conv.finished and conv.shown[-1] == "下午三点。"


async def test_a_retried_callback_is_one_event(kit: Kit) -> None:
    payload = kit.fake.message("重复的回调", user="wangwu")
    a = await kit.fake.send(payload)
    kit.fake.conversations.pop(payload["msgid"])
    b = await kit.fake.send(payload)
    assert len(kit.inbox.events) == 1 and a.first["stream"]["id"] == b.first["stream"]["id"]  # type: ignore[index]


async def test_mixed_and_quote_messages(kit: Kit) -> None:
    url = await kit.fake.media_url("p.jpg", b"\xff\xd8jpegdata")
    mixed = {"msg_item": [{"msgtype": "text", "text": {"content": "@AI助手 看看这张图"}},
                          {"msgtype": "image", "image": {"url": url}}]}  # fmt: skip
    quote = {"msgtype": "text", "text": {"content": "原来的方案"}}
    await kit.fake.send(kit.fake.message(chat=GROUP, kind="mixed", body=mixed, quote=quote))
    (event,) = kit.inbox.in_order()
    assert event.text == "@派 看看这张图" and event.reply_to.text == "原来的方案"  # type: ignore[union-attr]
    (att,) = event.attachments
    assert await kit.adapter.fetch_attachment(att, 10_000) == b"\xff\xd8jpegdata"  # decrypted
    own_key = FakeWeCom(aes=new_aes_key())  # a file encrypted with a key of its own, named in the callback
    kit.fake.files["k.jpg"] = own_key.encrypt_media(b"keyed")
    keyed = Attachment("image", "k.jpg", "image/jpeg", 0, f"{kit.fake._base}/media/k.jpg#aeskey={own_key.aes}=")
    assert await kit.adapter.fetch_attachment(keyed, 10_000) == b"keyed"
    big = Attachment("image", "big.jpg", "image/jpeg", 0, await kit.fake.media_url("big.jpg", b"x" * 20_000))
    with pytest.raises(DeliveryError, match="limit"):
        await kit.adapter.fetch_attachment(big, 10_000)


async def test_after_the_stream_window_the_answer_goes_through_the_response_url(kit: Kit) -> None:
    conv = await kit.fake.send(kit.fake.message("慢慢想", user="wangwu"))
    kit.clock.advance(400)  # WeCom stopped refreshing: the slot is closed
    await asyncio.wait_for(conv.done.wait(), 10)
    await kit.adapter.send(reply_to(kit, conv, "想好了：<@all> 不会被@到"))
    (resp,) = conv.responses
    assert resp["msgtype"] == "markdown" and resp["markdown"]["content"].startswith("想好了")
    assert "<@all>" not in resp["markdown"]["content"]
    with pytest.raises(DeliveryError, match="only in answer"):  # the response_url works once
        await kit.adapter.send(reply_to(kit, conv, "再补一句"))


async def test_nothing_can_be_said_where_nobody_asked(kit: Kit) -> None:
    with pytest.raises(DeliveryError, match="only in answer"):
        await kit.adapter.send(Outgoing(chat=ChatRef("wecom", GROUP), text="提醒：该开会了"))


async def test_an_answer_after_a_restart_finds_its_stream() -> None:
    k = await make_kit()
    try:
        conv = await k.fake.send(k.fake.message("重启前问的", user="wangwu"))
        await k.adapter.stop()
        k2 = await make_kit(inbox=k.inbox, clock=k.clock, fake=k.fake)
        k.adapter = k2.adapter
        await k.adapter.send(reply_to(k, conv, "重启后答的。"))
        await asyncio.wait_for(conv.done.wait(), 10)
        assert conv.finished and conv.shown[-1] == "重启后答的。"
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_an_answer_slot_is_kept_in_the_adapters_store_and_expires_with_its_response_url() -> None:
    clock = ManualClock()
    store = MemoryKeyValueStore(lambda: clock.now().timestamp())
    k = await make_kit(clock=clock, store=store)
    try:
        conv = await k.fake.send(k.fake.message("重启前问的", user="wangwu"))
        assert not [key for key in k.inbox.cursors if key.startswith("wecom:slot:")]  # no cursor row
        (key,) = [key for key in store.entries if key.startswith("wecom:slot:")]
        await k.adapter.stop()
        k2 = await make_kit(inbox=k.inbox, clock=k.clock, fake=k.fake, store=store)
        k.adapter = k2.adapter
        await k.adapter.send(reply_to(k, conv, "重启后答的。"))  # found again after a restart
        await asyncio.wait_for(conv.done.wait(), 10)
        assert conv.finished and conv.shown[-1] == "重启后答的。"
        clock.advance(3500 + 61)  # the response_url has expired: so has the slot
        assert await store.get(key) is None
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def until(cond: Any, timeout: float = 10.0) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)
