"""The adapter contract as a pytest suite that every adapter runs against itself (built-in or third-party).

Subclass ``AdapterContract`` in your adapter's tests and override one fixture, ``platform_under_test``: it
builds your adapter (not started) and a ``PlatformDriver`` that acts as a member of one group chat on your
platform (a fake server speaking its real protocol, or the real thing on loopback)::

    import pytest_asyncio
    from bot.testing.adapter_contract import AdapterContract, PlatformUnderTest

    class TestMyAdapter(AdapterContract):
        @pytest_asyncio.fixture
        async def platform_under_test(self, tmp_path):
            server = await FakeMyPlatform().start()
            yield PlatformUnderTest(adapter=MyAdapter(...), driver=MyDriver(server, chat_id="42"))
            await server.close()

The suite starts the adapter with an in-memory inbox (``bot.testing.inbox.MemoryInbox``), stops it after
each test and checks what the core relies on (see ``bot.ports.ChatAdapter``): members' messages arrive as
core ``Message`` values keyed by the adapter's platform name; ``send`` delivers text (split at
``capabilities.max_text_length``, replying to a member's message) and returns its ``SentRef``; the bot's
own messages never come back as a member's; ``edit`` and ``typing`` work when the capabilities say so;
``stop`` may be called twice. Tests wait on conditions, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
import pytest_asyncio

from bot.events import ChatRef, Message, Outgoing, SentRef
from bot.ports import Capabilities, ChatAdapter
from bot.testing.inbox import MemoryInbox

TIMEOUT_S = 20.0


class PlatformDriver(Protocol):
    """A member of one group chat on the platform, driving it from the outside (not through the adapter)."""

    chat_id: str  # the group chat, as the adapter names it in ``ChatRef.chat_id`` (valid once ``ready``)

    async def ready(self) -> None:
        """Called once the adapter started: set up the group chat with the bot in it (e.g. invite the bot
        and wait until it joined). May do nothing."""
        ...

    async def post(self, text: str) -> None:
        """A member (a person, not the bot) posts ``text`` in the chat."""
        ...

    async def bot_texts(self) -> list[str]:
        """The texts of the bot's messages in the chat as the platform shows them now (after edits), oldest
        first. Called repeatedly until a condition holds, so it should be cheap."""
        ...


@dataclass
class PlatformUnderTest:
    adapter: ChatAdapter  # built, not started
    driver: PlatformDriver


async def eventually(probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], what: str) -> Any:
    """Poll ``probe`` until ``accept`` holds for its value (the condition is waited for, not a duration)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {value!r}")
        await asyncio.sleep(0.02)


def platform_of(adapter: ChatAdapter) -> str:
    return getattr(adapter, "platform", None) or adapter.name


class AdapterContract:
    """The contract suite. Override ``platform_under_test``; everything else is inherited."""

    @pytest_asyncio.fixture
    async def platform_under_test(self) -> AsyncIterator[PlatformUnderTest]:
        raise NotImplementedError("override platform_under_test in your subclass")
        yield  # pragma: no cover

    @pytest_asyncio.fixture
    async def running(
        self, platform_under_test: PlatformUnderTest
    ) -> AsyncIterator[tuple[Any, Any, MemoryInbox]]:
        inbox = MemoryInbox()
        adapter = platform_under_test.adapter
        await adapter.start(inbox)
        try:
            await platform_under_test.driver.ready()
            yield adapter, platform_under_test.driver, inbox
        finally:
            await adapter.stop()

    @staticmethod
    async def members_message(driver: PlatformDriver, inbox: MemoryInbox, text: str) -> Message:
        await driver.post(text)
        return await inbox.wait_for(lambda m: text in m.text and not m.from_me, TIMEOUT_S)

    # ----------------------------------------------------------------- the contract

    @pytest.mark.asyncio
    async def test_capabilities_are_declared(self, running: Any) -> None:
        adapter, _, _ = running
        assert isinstance(adapter.capabilities, Capabilities)
        assert adapter.capabilities.max_text_length > 0
        assert platform_of(adapter) and ":" not in platform_of(adapter)

    @pytest.mark.asyncio
    async def test_a_members_message_reaches_the_inbox_as_a_core_message(self, running: Any) -> None:
        adapter, driver, inbox = running
        msg = await self.members_message(driver, inbox, "hello from the contract suite")
        assert isinstance(msg, Message)
        assert msg.chat.platform == platform_of(adapter) and msg.chat.chat_id == driver.chat_id
        assert msg.event_id and msg.id
        assert msg.sent_at.tzinfo is not None
        assert msg.author.platform == platform_of(adapter) and msg.author.user_id
        assert not msg.author.is_bot and not msg.from_me

    @pytest.mark.asyncio
    async def test_send_replies_to_a_member_and_returns_its_ref(self, running: Any) -> None:
        adapter, driver, inbox = running
        trigger = await self.members_message(driver, inbox, "ping from a member")
        chat = ChatRef(platform_of(adapter), driver.chat_id)
        ref = await adapter.send(
            Outgoing(chat, "pong from the bot", reply_to=trigger.id, idempotency_key=trigger.event_id)
        )
        assert isinstance(ref, SentRef) and ref.message_id
        assert ref.chat.key == chat.key
        await eventually(
            driver.bot_texts, lambda texts: "pong from the bot" in texts, "the reply on the platform"
        )

    @pytest.mark.asyncio
    async def test_the_bots_own_messages_never_come_back_as_a_members(self, running: Any) -> None:
        adapter, driver, inbox = running
        chat = ChatRef(platform_of(adapter), driver.chat_id)
        await adapter.send(Outgoing(chat, "said by the bot itself"))
        # A member's message posted afterwards arrives after the bot's own would have.
        await self.members_message(driver, inbox, "said by a member afterwards")
        echoed = [m for m in inbox.messages() if "said by the bot itself" in m.text]
        assert all(m.from_me for m in echoed), echoed

    @pytest.mark.asyncio
    async def test_a_long_text_is_split_at_the_platform_limit(self, running: Any) -> None:
        adapter, driver, _ = running
        limit = adapter.capabilities.max_text_length
        if limit > 20_000:
            pytest.skip("the platform takes texts longer than this test writes")
        words = [f"w{i:05d}" for i in range(int(limit * 2.5) // 7 + 1)]
        await adapter.send(Outgoing(ChatRef(platform_of(adapter), driver.chat_id), " ".join(words)))
        texts = await eventually(
            driver.bot_texts, lambda t: " ".join(t).split()[-1:] == words[-1:], "every part of the long text"
        )
        assert len(texts) >= 3
        assert all(len(t) <= limit for t in texts)
        assert " ".join(texts).split() == words

    @pytest.mark.asyncio
    async def test_edit_replaces_the_text_when_the_platform_edits(self, running: Any) -> None:
        adapter, driver, _ = running
        if not adapter.capabilities.edit:
            pytest.skip("capabilities.edit is off")
        ref = await adapter.send(Outgoing(ChatRef(platform_of(adapter), driver.chat_id), "first draft"))
        await adapter.edit(ref, "final answer")
        texts = await eventually(driver.bot_texts, lambda t: "final answer" in t, "the edited text")
        assert "first draft" not in texts

    @pytest.mark.asyncio
    async def test_typing_never_raises(self, running: Any) -> None:
        adapter, driver, _ = running
        if not adapter.capabilities.typing:
            pytest.skip("capabilities.typing is off")
        await adapter.typing(ChatRef(platform_of(adapter), driver.chat_id))

    @pytest.mark.asyncio
    async def test_stop_may_be_called_twice(self, platform_under_test: PlatformUnderTest) -> None:
        adapter = platform_under_test.adapter
        await adapter.start(MemoryInbox())
        await adapter.stop()
        await adapter.stop()
