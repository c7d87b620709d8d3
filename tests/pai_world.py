"""Two fake platforms under one running app, for the tests of pais, the relay and linked accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from bot.app import App
from bot.config import parse_settings
from bot.events import Attachment, ChatRef, Message, Outgoing, PersonRef, SentRef
from bot.ports import Capabilities
from tests.fakes import FakeAdapter, FakeMemory, ManualClock, ScriptedLLM, make_message

WAIT_S = 20  # a bound on a hang, not a timing assertion


class Platform(FakeAdapter):
    """A fake platform that labels itself, deletes the bot's messages, serves attachments and writes to
    people privately (``direct`` holds what it wrote: (user id, text))."""

    def __init__(self, platform: str, label: str, capabilities: Capabilities | None = None) -> None:
        super().__init__(platform, capabilities or Capabilities(max_text_length=4000, edit=True, files=True))
        self.label = label
        self.deleted: list[SentRef] = []
        self.files: dict[str, bytes] = {}
        self.direct: list[tuple[str, str]] = []

    async def delete(self, ref: SentRef) -> None:
        self.deleted.append(ref)

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        return self.files[att.source][:max_bytes]

    async def send_direct(self, user: PersonRef, text: str) -> SentRef:
        self.direct.append((user.user_id, text))
        return SentRef(ChatRef(self.platform, f"dm-{user.user_id}"), f"dm-{len(self.direct)}")

    def texts(self) -> list[str]:
        return [o.text for o in self.sent]

    def to(self, chat_id: str) -> list[str]:
        return [o.text for o in self.sent if o.chat.chat_id == chat_id]

    def say(self, text: str, *, chat: str, author: str, name: str = "", **kw: Any) -> Message:
        return make_message(text, chat=chat, platform=self.platform, author=author, name=name or author.capitalize(),
                            **kw)


class Watched(Platform):
    """The fake platform, with waits on what the core sends and deletes there."""

    def __init__(self, platform: str = "alpha", label: str = "AL") -> None:
        super().__init__(platform, label)
        self.changed = asyncio.Condition()

    async def send(self, out: Outgoing) -> SentRef:
        ref = await super().send(out)
        async with self.changed:
            self.changed.notify_all()
        return ref

    async def delete(self, ref: SentRef) -> None:
        await super().delete(ref)
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), WAIT_S)


class HostPlatform(Platform):
    """A fake platform the bot hosts rooms on (``bot.ports.HostedRooms``): ``links`` holds what it signed."""

    def __init__(self, platform: str = "home", label: str = "Home") -> None:
        super().__init__(platform, label)
        self.rooms: list[ChatRef] = []
        self.links: list[tuple[ChatRef, PersonRef]] = []

    async def open_room(self, title: str) -> ChatRef:
        self.rooms.append(ChatRef(self.platform, f"room{len(self.rooms) + 1}", title))
        return self.rooms[-1]

    async def sign_in_link(self, room: ChatRef, member: PersonRef, ttl_s: float) -> str:
        self.links.append((room, member))
        return f"https://home.example/signin/token{len(self.links)}"


@dataclass
class World:
    app: App
    alpha: Platform
    beta: Platform
    memory: FakeMemory
    llm: ScriptedLLM | None
    home: HostPlatform

    async def post(self, platform: Platform, text: str, *, chat: str, author: str, name: str = "",
                   **kw: Any) -> Message:
        msg = platform.say(text, chat=chat, author=author, name=name, **kw)
        await platform.inject(msg)
        await self.app.drain()
        return msg

    def texts(self, pai: str) -> list[str]:
        return self.memory.texts(pai)

    def sent_since(self, platform: Platform, n: int) -> list[Outgoing]:
        return platform.sent[n:]


def settings(tmp_path: Any, extra: str = "", skills: Sequence[str] = ()):
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false, admins: ['alpha:alice', 'beta:bob']}}\n"
        "llm: {retry_base_s: 0.01, retry_max_s: 0.01}\n" + extra,
        env={},
    )


async def world(tmp_path: Any, *, extra: str = "", llm: ScriptedLLM | None = None,
                skills: list[Any] | None = None) -> AsyncIterator[World]:
    """A running app with platforms ``alpha`` (label AL) and ``beta`` (BE), and ``home`` where the bot hosts
    rooms; ``bot.admins`` are alpha:alice and beta:bob. ``skills=None`` runs every installed skill."""
    alpha, beta, home = Platform("alpha", "AL"), Platform("beta", "BE"), HostPlatform()
    memory = FakeMemory()
    app = App(settings(tmp_path, extra), llm=llm, adapters={"alpha": alpha, "beta": beta, "home": home},
              memory=memory, skills=skills, clock=ManualClock())
    await app.start()
    try:
        yield World(app, alpha, beta, memory, llm, home)
    finally:
        await app.stop()
