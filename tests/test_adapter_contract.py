"""The adapter contract suite (``bot.testing.adapter_contract``) run against every built-in adapter, each
through its unmodified SDK against a local server speaking the platform's real protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.config import DiscordAdapterSettings
from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.config import MatrixAdapterSettings
from adapters.matrix.sync import SyncOptions
from adapters.web.adapter import WebAdapter
from bot.events import ChatRef, Outgoing
from bot.ports import AdapterEnv
from bot.testing.adapter_contract import AdapterContract, PlatformUnderTest, eventually
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram, make_adapter
from tests.matrix_helpers import Human
from tests.synapse_server import SynapseServer
from tests.web_members import member_headers

# --------------------------------------------------------------------------- web


class WebMember:
    """A member of one web group, over its JSON API (the address is known once the adapter listens)."""

    def __init__(self, adapter: WebAdapter) -> None:
        self._adapter = adapter
        self._http: aiohttp.ClientSession | None = None
        self.chat_id = ""  # the group's number (the core's chat id)
        self._address = ""  # what its API paths use

    async def ready(self) -> None:
        self._http = aiohttp.ClientSession(base_url=self._adapter.base_url)
        resp = await self._http.post("/api/groups", json={"name": "Contract"})
        group = await resp.json()
        self.chat_id, self._address = group["number"], group["address"]

    async def post(self, text: str) -> None:
        assert self._http is not None
        resp = await self._http.post(
            f"/api/groups/{self._address}/messages", json={"text": text}, headers=await member_headers(self._http, "Ann")
        )
        assert resp.status == 200, await resp.text()

    async def bot_texts(self) -> list[str]:
        assert self._http is not None
        resp = await self._http.get(f"/api/groups/{self._address}/messages", params={"limit": "500"})
        return [m["text"] for m in (await resp.json())["messages"] if m["is_bot"]]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class TestWebAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, tmp_path: Path) -> AsyncIterator[PlatformUnderTest]:
        adapter = WebAdapter(bot_name="Pai", data_dir=tmp_path, port=0, max_text_length=500)
        member = WebMember(adapter)
        yield PlatformUnderTest(adapter, member)
        await member.close()


# --------------------------------------------------------------------------- telegram

GROUP = -1001234567890


class TelegramMember:
    def __init__(self, fake: FakeTelegram) -> None:
        self._fake = fake
        self.chat_id = str(GROUP)
        self._user = FakeTelegram.user(42, "Alice", "alice")

    async def ready(self) -> None:
        self._fake.chat(GROUP)

    async def post(self, text: str) -> None:
        await self._fake.message(GROUP, self._user, text)

    async def bot_texts(self) -> list[str]:
        texts = {
            m["message_id"]: m["text"] for m in self._fake.sent if m["chat"]["id"] == GROUP and "text" in m
        }
        for edit in self._fake.edits:
            if edit["chat_id"] == GROUP and edit["message_id"] in texts:
                texts[edit["message_id"]] = edit["text"]
        return list(texts.values())


class TestTelegramAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, tmp_path: Path) -> AsyncIterator[PlatformUnderTest]:
        fake = await FakeTelegram().start()
        yield PlatformUnderTest(make_adapter(fake, tmp_path), TelegramMember(fake))
        await fake.close()


# --------------------------------------------------------------------------- discord


class DiscordMember:
    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self.chat_id = str(fake.general)
        self._user = fake.add_user("lena")

    async def ready(self) -> None:
        return None

    async def post(self, text: str) -> None:
        await self._fake.user_says(self._user, text)

    async def bot_texts(self) -> list[str]:
        return [m["content"] for m in self._fake.sent_by_bot(self._fake.general)]


class TestDiscordAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, tmp_path: Path) -> AsyncIterator[PlatformUnderTest]:
        fake = FakeDiscord()
        await fake.start()
        cfg = DiscordAdapterSettings(
            enabled=True, token=fake.token, api_base=fake.api_base, gateway_url=fake.gateway_url
        )
        adapter = DiscordAdapter(
            cfg, AdapterEnv(bot_name="Pai", data_dir=tmp_path), guild_ready_timeout=0.05, ready_timeout_s=20
        )
        yield PlatformUnderTest(adapter, DiscordMember(fake))
        await fake.stop()


# --------------------------------------------------------------------------- matrix


class MatrixMember:
    def __init__(self, server: SynapseServer, bot_id: str) -> None:
        self._user = server.register(server.unique("alice"), displayname="Alice")
        self._human = Human(server, self._user)
        self._bot_id = bot_id
        self.chat_id = ""

    @property
    def user_id(self) -> str:
        return self._user.user_id

    async def ready(self) -> None:
        self.chat_id = await self._human.create_room(invite=[self._bot_id])
        await self._human.wait_membership(self.chat_id, self._bot_id, "join")

    async def post(self, text: str) -> None:
        await self._human.say(self.chat_id, text)

    async def bot_texts(self) -> list[str]:
        texts: dict[str, str] = {}
        for e in await self._human.history(self.chat_id, limit=200):
            content = e.get("content") or {}
            if e.get("type") != "m.room.message" or e.get("sender") != self._bot_id:
                continue
            new = content.get("m.new_content")
            relates = content.get("m.relates_to") or {}
            if new and relates.get("rel_type") == "m.replace":
                texts[relates["event_id"]] = new.get("body", "")
            else:
                texts.setdefault(e["event_id"], content.get("body", ""))
        return list(texts.values())

    async def close(self) -> None:
        await self._human.close()


@pytest.mark.synapse
class TestMatrixAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, synapse: SynapseServer) -> AsyncIterator[PlatformUnderTest]:  # noqa: F811
        bot = synapse.register(synapse.unique("pai"), displayname="Pai")
        member = MatrixMember(synapse, bot.user_id)
        cfg = MatrixAdapterSettings(
            enabled=True,
            homeserver=synapse.base_url,
            user_id=bot.user_id,
            password=bot.password,
            allowed_inviters=(member.user_id,),
        )
        adapter: Any = MatrixAdapter(
            cfg, options=SyncOptions(sync_timeout_ms=2_000, allowed_inviters=cfg.allowed_inviters)
        )
        yield PlatformUnderTest(adapter, member)
        await member.close()


# --------------------------------------------------------------------------- QQ through OneBot v11

QQ_GROUP = 445566


class OneBotMember:
    """A member of one QQ group, posting through the fake OneBot implementation."""

    def __init__(self, fake: Any) -> None:
        self._fake = fake
        self.chat_id = str(QQ_GROUP)

    async def ready(self) -> None:
        return None

    async def post(self, text: str) -> None:
        await self._fake.post(QQ_GROUP, 111, text)

    async def bot_texts(self) -> list[str]:
        return [
            "".join(seg["data"].get("text", "") for seg in m.segments if seg["type"] == "text").strip()
            for m in self._fake.sent
            if m.message_type == "group" and m.peer == QQ_GROUP
        ]


class TestOneBotAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, tmp_path: Path) -> AsyncIterator[PlatformUnderTest]:
        from adapters.onebot.adapter import OneBotAdapter
        from adapters.onebot.config import OneBotSettings
        from tests.fake_onebot import FakeOneBot

        fake = FakeOneBot(token="contract")
        fake.group(QQ_GROUP, "Contract")
        fake.member(QQ_GROUP, 111, "ann", card="Ann")
        await fake.serve_ws()
        cfg = OneBotSettings(
            enabled=True, url=fake.ws_url, access_token="contract", send_interval_s=0, group_per_minute=0,
            global_per_minute=0, message_limit=500,
        )  # fmt: skip
        adapter = OneBotAdapter(cfg, AdapterEnv(bot_name="Pai", data_dir=tmp_path))
        yield PlatformUnderTest(adapter, OneBotMember(fake))
        await fake.close()


# --------------------------------------------------------------------------- WeCom AI bot

WECOM_GROUP = "wrkContract"


class WeComMember:
    """A member of one WeCom group, @-ing the AI bot through the fake WeCom (which only delivers what is
    addressed to the bot, and shows the bot's answers: streams and response_url messages)."""

    def __init__(self, fake: Any, adapter: Any) -> None:
        self._fake = fake
        self._adapter = adapter
        self.chat_id = WECOM_GROUP

    async def ready(self) -> None:
        await self._fake.start(self._adapter.where)
        # WeCom chats begin with a member speaking to the bot: the bot can speak there from then on.
        await self._fake.send(self._fake.message("@Pai hi", chat=WECOM_GROUP, user="ann"))

    async def post(self, text: str) -> None:
        await self._fake.send(self._fake.message(text, chat=WECOM_GROUP, user="ann"))

    async def bot_texts(self) -> list[str]:
        texts: list[str] = []
        for conv in self._fake.conversations.values():
            if conv.shown and conv.shown[-1]:
                texts.append(conv.shown[-1])
            texts += [r["markdown"]["content"] for r in conv.responses]
        return texts


class TestWeComAdapter(AdapterContract):
    @pytest_asyncio.fixture
    async def platform_under_test(self, tmp_path: Path) -> AsyncIterator[PlatformUnderTest]:
        from adapters.wecom.adapter import WeComAdapter
        from adapters.wecom.config import WeComSettings
        from tests.fake_wecom import FakeWeCom

        fake = FakeWeCom()
        cfg = WeComSettings(enabled=True, token=fake.token, encoding_aes_key=fake.aes, port=0)
        adapter = WeComAdapter(cfg, AdapterEnv(bot_name="Pai", data_dir=tmp_path))
        yield PlatformUnderTest(adapter, WeComMember(fake, adapter))
        await fake.close()

    @pytest.mark.asyncio
    async def test_a_long_text_is_split_at_the_platform_limit(self, running: Any) -> None:
        pytest.skip("WeCom takes one answer per member message (its stream, or its response_url once): "
                    "a text is not split into several messages")  # fmt: skip

    @pytest.mark.asyncio
    async def test_edit_replaces_the_text_when_the_platform_edits(self, running: Any) -> None:
        """WeCom edits only an answer still streaming to a member's message."""
        adapter, driver, inbox = running
        trigger = await self.members_message(driver, inbox, "a question to answer in a stream")
        chat = ChatRef("wecom", driver.chat_id)
        ref = await adapter.send(Outgoing(chat, "first draft", reply_to=trigger.id, streaming=True))
        await adapter.finish_edit(ref, "final answer")
        texts = await eventually(driver.bot_texts, lambda t: "final answer" in t, "the edited text")
        assert "first draft" not in texts
