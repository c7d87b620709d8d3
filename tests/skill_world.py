"""A running App with the default skills, a fake adapter and a manual clock, for the skill tests."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.skills.duejobs import DueLoop
from tests.fakes import FakeAdapter, FakeMemory, ManualClock

ADMIN = "boss"


def skill_settings(tmp_path: Any, extra: str = "", tz: str = "Asia/Shanghai") -> Any:
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false, timezone: '{tz}', admins: ['fake:{ADMIN}']}}\n"
        "llm: {retry_base_s: 0.01, retry_max_s: 0.01}\n"
        + ("" if "limits:" in extra else "limits: {member_per_minute: 1000, group_per_minute: 1000}\n")
        # the manual clock jumps days ahead of the fixed message times: answer whatever the age
        + ("" if "triggers:" in extra else "triggers: {answer_within_minutes: 0}\n")
        + extra
    )


class World:
    """Builds apps on one data directory and stops them all at the end."""

    def __init__(self, tmp_path: Any) -> None:
        self.tmp_path = tmp_path
        self.apps: list[App] = []
        self.clock = ManualClock()

    async def start(
        self,
        llm: Any = None,
        *,
        extra: str = "",
        memory: Any = None,
        adapter: Any = None,
        tz: str = "Asia/Shanghai",
        manual: bool = True,
    ) -> tuple[App, FakeAdapter, Any]:
        adapter = adapter or FakeAdapter()
        mem = None if memory == "real" else memory if memory is not None else FakeMemory()
        app = App(
            skill_settings(self.tmp_path, extra, tz),
            llm=llm,
            adapters={"fake": adapter},
            memory=mem,
            clock=self.clock,
        )
        await app.start()
        self.apps.append(app)
        mem = app.services.memory
        if manual:  # tests drive the due-work loops with explicit ticks, so nothing fires behind their back
            for value in app.background:
                loop = getattr(value, "loop", None)
                if isinstance(loop, DueLoop):
                    await loop.stop()
        return app, adapter, mem

    async def stop(self, app: App) -> None:
        await app.stop()
        self.apps.remove(app)

    async def close(self) -> None:
        for app in list(self.apps):
            await app.stop()
        self.apps.clear()


def skill(app: App, name: str) -> Any:
    assert app.services is not None
    return app.skill(name)


async def say(app: App, adapter: FakeAdapter, msg: Any) -> list[str]:
    """Inject one message, wait until it is handled, and return the texts the bot sent because of it."""
    before = len(adapter.sent)
    await adapter.inject(msg)
    await app.drain()
    return [o.text for o in adapter.sent[before:]]


@pytest.fixture(name="world")
async def world_fixture(tmp_path: Any) -> Any:
    w = World(tmp_path)
    yield w
    await w.close()
