"""The OneBot adapter over each connection mode against the fake implementation on loopback: forward
WebSocket, reverse WebSocket (universal and split API/Event), HTTP API with HTTP POST events. In each, a
member's message reaches the inbox and an answer reaches the group; a refused access token is one clear
error; a dropped connection comes back by itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.onebot.adapter import OneBotAdapter
from adapters.onebot.config import OneBotSettings
from bot.errors import CredentialsRejected, PlatformUnavailable
from bot.events import ChatRef, Outgoing
from bot.ports import AdapterEnv
from tests.fake_onebot import FakeOneBot
from tests.fakes import ManualClock, RecordingInbox

GROUP = 445566
ALICE = 111
TOKEN = "s3cret-token"


class WaitingInbox(RecordingInbox):
    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def commit(self, events: Any, cursor_key: str | None, cursor: str | None) -> int:
        n = super().commit(events, cursor_key, cursor)
        self.changed.set()
        return n

    async def until(self, n: int, timeout: float = 20.0) -> list[Any]:
        async def wait() -> None:
            while len(self.order) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)
        return self.in_order()


@dataclass
class Kit:
    fake: FakeOneBot
    adapter: OneBotAdapter
    inbox: WaitingInbox
    mode: str


def settings_for(mode: str, fake: FakeOneBot, token: str, **over: Any) -> OneBotSettings:
    base: dict[str, Any] = {"enabled": True, "access_token": token, "send_interval_s": 0.0, "port": 0}
    if mode == "forward":
        base.update(mode="forward", url=fake.ws_url)
    elif mode.startswith("reverse"):
        base.update(mode="reverse", path="/onebot/v11/ws")
    else:
        base.update(mode="http", url=fake.http_url, path="/onebot/events")
    base.update(over)
    return OneBotSettings(**base)


async def bring_up(mode: str, *, token: str = TOKEN, fake_token: str | None = None, **over: Any) -> Kit:
    fake = FakeOneBot(token=TOKEN if fake_token is None else fake_token)
    fake.group(GROUP, "读书会")
    fake.member(GROUP, ALICE, "alice", card="爱丽丝")
    if mode == "forward":
        await fake.serve_ws()
    elif mode == "http":
        await fake.serve_http()
    adapter = OneBotAdapter(
        settings_for(mode, fake, token, **over), AdapterEnv("派", None), clock=ManualClock()
    )
    inbox = WaitingInbox()
    try:
        await adapter.start(inbox)
    except BaseException:
        await fake.close()
        raise
    link: Any = adapter.link
    if mode.startswith("reverse"):
        await fake.connect_reverse(link.where, split=mode == "reverse-split")
        await asyncio.wait_for(_until(lambda: bool(link.ready)), 10)
    elif mode == "http":
        fake.post_events_to(link.where, TOKEN)
    await wait_identity(adapter)
    return Kit(fake, adapter, inbox, mode)


async def wait_identity(adapter: OneBotAdapter) -> None:
    async def known() -> None:
        while adapter.me is None:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(known(), 10)


MODES = ["forward", "reverse", "reverse-split", "http"]


@pytest.fixture(params=MODES)
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    k = await bring_up(request.param)
    try:
        yield k
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_a_member_message_reaches_the_inbox(kit: Kit) -> None:
    posted = await kit.fake.post(GROUP, ALICE, "今天读到第三章", at_bot=True)
    (event,) = await kit.inbox.until(1)
    assert event.chat.key == f"onebot:{GROUP}" and event.chat.title == "读书会"
    assert event.author.display_name == "爱丽丝" and event.id == str(posted.message_id)
    assert event.mentions_me and event.text == "@派 今天读到第三章"
    assert kit.inbox.cursors["onebot:last"] == str(float(posted.time))


async def test_an_answer_reaches_the_group_quoting_and_mentioning(kit: Kit) -> None:
    q = await kit.fake.post(GROUP, ALICE, "第三章讲什么", at_bot=True)
    out = Outgoing(chat=ChatRef("onebot", str(GROUP)), text="讲的是归纳。", reply_to=str(q.message_id),
                   mention_user_ids=(str(ALICE),), idempotency_key="e1")  # fmt: skip
    ref = await kit.adapter.send(out)
    (sent,) = kit.fake.sent
    assert ref.message_id == str(sent.message_id)
    assert [s["type"] for s in sent.segments] == ["reply", "at", "text"]
    assert sent.segments[0]["data"]["id"] == str(q.message_id) and sent.segments[1]["data"]["qq"] == str(
        ALICE
    )


async def test_a_refused_token_stops_the_start_with_one_clear_error() -> None:
    for mode in ("forward", "http"):
        with pytest.raises(CredentialsRejected, match="refused paibot's access token"):
            await bring_up(mode, token="wrong")


async def test_napcat_refuses_a_token_after_accepting_the_socket() -> None:
    fake = FakeOneBot(token=TOKEN, refuse_like_napcat=True)
    await fake.serve_ws()
    adapter = OneBotAdapter(
        settings_for("forward", fake, "wrong"), AdapterEnv("派", None), clock=ManualClock()
    )
    try:
        with pytest.raises(CredentialsRejected):
            await adapter.start(WaitingInbox())
        assert fake.refused == 1
    finally:
        await fake.close()


async def test_an_unreachable_implementation_is_unavailable_naming_the_url() -> None:
    fake = FakeOneBot()
    fake.ws_url = "ws://127.0.0.1:9/"  # nothing listens on the discard port
    adapter = OneBotAdapter(settings_for("forward", fake, ""), AdapterEnv("派", None), clock=ManualClock())
    with pytest.raises(PlatformUnavailable, match="ws://127.0.0.1:9/"):
        await adapter.start(WaitingInbox())


async def test_reverse_mode_refuses_a_wrong_token_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "paibot.onebot")
    fake = FakeOneBot(token="wrong")
    adapter = OneBotAdapter(settings_for("reverse", fake, TOKEN), AdapterEnv("派", None), clock=ManualClock())
    await adapter.start(WaitingInbox())
    try:
        await fake.connect_reverse(adapter.link.where)  # type: ignore[union-attr]
        await fake.wait_until(lambda: fake.post_status.count(403) >= 3)
        refusals = [r for r in caplog.records if "refused a connection" in r.getMessage()]
        assert len(refusals) == 1 and "access token is wrong" in refusals[0].getMessage()
        assert TOKEN not in caplog.text and "wrong" not in refusals[0].getMessage().split(":")[0]
    finally:
        await adapter.stop()
        await fake.close()


async def test_http_events_need_a_valid_signature() -> None:
    k = await bring_up("http")
    try:
        k.fake.post_events_to(k.adapter.link.where, "not-the-key")  # type: ignore[union-attr]
        await k.fake.post(GROUP, ALICE, "伪造的")
        await k.fake.wait_until(lambda: k.fake.post_status[-1:] == [403])
        k.fake.post_events_to(k.adapter.link.where, TOKEN)  # type: ignore[union-attr]
        await k.fake.post(GROUP, ALICE, "真的")
        (event,) = await k.inbox.until(1)
        assert event.text == "真的" and k.fake.post_status[-1] == 204
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_a_dropped_forward_connection_comes_back_and_catches_up() -> None:
    k = await bring_up("forward")
    try:
        await k.fake.post(GROUP, ALICE, "第一条")
        await k.inbox.until(1)
        await k.fake.drop_connections()
        await k.fake.post(GROUP, ALICE, "断线时说的")  # nobody listens: only history has it
        await k.fake.wait_until(lambda: k.fake.connections == 1)
        await k.fake.post(GROUP, ALICE, "重连后说的")
        events = await k.inbox.until(3)
        assert {e.text for e in events} == {"第一条", "断线时说的", "重连后说的"}
    finally:
        await k.adapter.stop()
        await k.fake.close()


async def test_sends_while_disconnected_are_unavailable_not_lost() -> None:
    k = await bring_up("reverse")
    try:
        await k.fake.close()
        await asyncio.wait_for(_until(lambda: not k.adapter.link.ready), 10)  # type: ignore[union-attr]
        with pytest.raises(PlatformUnavailable):
            await k.adapter.send(Outgoing(chat=ChatRef("onebot", str(GROUP)), text="在吗"))
    finally:
        await k.adapter.stop()


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.01)
