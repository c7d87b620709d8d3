"""A running app for the files, images and fact-check skill tests: the fake adapter that can also serve
attachment bytes, real or fake memory, and the skill modules under test loaded through their
``build(services, registry)``."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.errors import DeliveryError
from bot.events import Attachment, Message
from bot.plugins import SkillEnv
from bot.ports import Capabilities
from bot.skills.resources import SkillResources
from tests.fakes import FakeAdapter, FakeMemory, make_message


class FetchingAdapter(FakeAdapter):
    """``FakeAdapter`` plus ``AttachmentFetcher``: ``files[source]`` holds the bytes a platform would serve."""

    def __init__(self) -> None:
        super().__init__(capabilities=Capabilities(max_text_length=4000, edit=True, files=True))
        self.files: dict[str, bytes] = {}
        self.fetches: list[tuple[str, int]] = []

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        self.fetches.append((att.source, max_bytes))
        data = self.files.get(att.source)
        if data is None:
            raise DeliveryError(f"no such file {att.source}")
        if len(data) > max_bytes:
            raise DeliveryError(f"{att.name} is over the {max_bytes}-byte limit")
        return data


def attach(msg: Message, *atts: Attachment) -> Message:
    return dataclasses.replace(msg, attachments=atts)


def file_att(adapter: FetchingAdapter, name: str, data: bytes, mime: str = "", kind: str = "file",
             declared_size: int | None = None) -> Attachment:  # fmt: skip
    """Host ``data`` on the fake platform and return the attachment a message would carry."""
    source = f"src:{name}:{len(adapter.files)}"
    adapter.files[source] = data
    return Attachment(kind, name, mime, len(data) if declared_size is None else declared_size, source)


@dataclass
class World:
    app: App
    adapter: FetchingAdapter
    memory: Any
    skills: list[Any] = field(default_factory=list)

    @property
    def services(self) -> Any:
        return self.app.services

    def skill(self, cls: type) -> Any:
        return next(s for s in self.skills if isinstance(s, cls))

    async def say(self, msg: Message) -> None:
        await self.adapter.inject(msg)
        await self.app.drain(timeout=30)


def settings_yaml(tmp_path: Any, extra: str = "") -> str:
    return (
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        "llm: {retry_base_s: 0.01, retry_max_s: 0.01}\n"
        "memory: {embedding: offline}\n" + extra
    )


@pytest.fixture
async def media_world(tmp_path) -> AsyncIterator[Any]:
    """``await media_world(modules, llm=None, extra="", real_memory=False, image_generator=None)`` -> ``World``
    (the skill modules' plugins built as the composition root would, with ``image_generator`` shared)."""
    apps: list[tuple[App, list[Any]]] = []

    async def build(modules: tuple[str, ...], llm: Any = None, extra: str = "", real_memory: bool = False,
                    image_generator: Any = None) -> World:  # fmt: skip
        settings = parse_settings(settings_yaml(tmp_path, extra))
        adapter = FetchingAdapter()
        memory = None if real_memory else FakeMemory()
        app = App(settings, llm=llm, adapters={"fake": adapter}, memory=memory, skills=[])
        await app.start()
        shared = SkillResources(settings.data_path, image_generator=image_generator)
        background: list[Any] = []
        skills: list[Any] = []
        for name in modules:
            plugin = importlib.import_module(name).plugin
            built = plugin.build(SkillEnv(plugin.settings(), app.services, app.registry, shared))
            for one in built.skills:
                app.registry.add_skill(one)
            skills.extend(built.skills)
            background.extend(built.background)
        background[:0] = shared.opened
        for svc in background:
            await svc.start()
        apps.append((app, background))
        return World(app, adapter, app.services.memory, skills)

    yield build
    for app, background in apps:
        for svc in background:
            await svc.stop()
        await app.stop()


def live_message(text: str, **kw: Any) -> Message:
    """``make_message`` stamped with the real current time (the member does not answer stale messages)."""
    kw.setdefault("sent_at", datetime.now(timezone.utc))
    return make_message(text, **kw)
