"""The handles the pipeline, commands and skills share. Built once by the composition root."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.errors import DeliveryError
from bot.events import ChatRef, Message, Outgoing, SentRef
from bot.ports import ChatAdapter, Clock, MemoryRecord, MemoryStore
from bot.state import StateDB

if TYPE_CHECKING:
    from bot.brain import Brain


@dataclass
class Services:
    settings: Settings
    memory: MemoryStore
    state: StateDB
    clock: Clock
    brain: Brain | None = None
    adapters: dict[str, ChatAdapter] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    extras: dict[str, Any] = field(default_factory=dict)

    def adapter_for(self, chat: ChatRef) -> ChatAdapter:
        adapter = self.adapters.get(chat.platform)
        if adapter is None:
            raise DeliveryError(f"no adapter is running for platform {chat.platform!r}")
        return adapter

    def tz_for(self, group_key: str) -> ZoneInfo:
        return ZoneInfo(self.settings.group(group_key).timezone or self.settings.bot.timezone)

    def name_for(self, group_key: str) -> str:
        return self.settings.group(group_key).name or self.settings.bot.name

    async def send(self, out: Outgoing) -> SentRef:
        """Deliver through the chat's adapter and remember what the bot said (so replies to it are ours)."""
        ref = await self.adapter_for(out.chat).send(out)
        await self.remember_own(out, ref)
        return ref

    async def remember_own(self, out: Outgoing, ref: SentRef) -> None:
        key = out.chat.key
        for mid in (ref.message_id, *ref.part_ids):
            await self.state.group_set(key, f"own:{mid}", "1")
        pai = self.settings.pai_of(key)
        await self.memory.record(
            MemoryRecord(
                id=ref.message_id if pai == key else f"{key}#{ref.message_id}",
                pai=pai,
                chat_key=key,
                author_id="@me",
                author_name=self.name_for(key),
                text=out.text,
                sent_at=ref.sent_at,
                reply_to_id=out.reply_to,
                url=ref.url,
                is_bot=True,
            )
        )

    async def is_own_message(self, chat: ChatRef, message_id: str) -> bool:
        return await self.state.group_get(chat.key, f"own:{message_id}") is not None


def record_of(msg: Message, pai: str) -> MemoryRecord:
    """The memory record of an inbound message (attachments noted in the text for search)."""
    text = msg.text
    if msg.attachments:
        text += "".join(f" [{a.kind}: {a.name}]" for a in msg.attachments)
    # Inside a pai that bridges several chats, platform message ids may collide: qualify them.
    rec_id = msg.id if pai == msg.chat.key else f"{msg.chat.key}#{msg.id}"
    return MemoryRecord(
        id=rec_id,
        pai=pai,
        chat_key=msg.chat.key,
        author_id=msg.author.user_id,
        author_name=msg.author.display_name,
        text=text,
        sent_at=msg.sent_at,
        reply_to_id=msg.reply_to.message_id if msg.reply_to else None,
        url=msg.url,
        is_bot=msg.author.is_bot or msg.from_me,
        meta={"thread": msg.thread} if msg.thread else {},
    )
