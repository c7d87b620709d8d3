"""Adapters' key-value stores (``bot.ports.KeyValueStore`` over ``StateDB``): one namespace per adapter,
entries that expire and are pruned, and the Telegram send journal kept there instead of in the intake
cursors (one row per reply, never pruned, before)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram.records import KEEP_S
from bot.app import App
from bot.config import parse_settings
from bot.events import ChatRef, Outgoing
from bot.plugins import AdapterPlugin, Enabled, PluginCatalog
from bot.state import StateDB
from tests.fake_telegram import FakeTelegram, RecordingSink, make_adapter
from tests.fakes import FakeAdapter, FakeMemory, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def state(tmp_path: Path, clock: ManualClock) -> Any:
    db = StateDB(tmp_path / "paibot.db", clock=clock.now)
    yield db
    db.close()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(str(path))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_each_adapter_sees_only_its_own_entries(state: StateDB) -> None:
    one, other = state.store("linechat"), state.store("telegram")
    await one.put("cursor", "42")
    assert await one.get("cursor") == "42"
    assert await other.get("cursor") is None
    await one.delete("cursor")
    assert await one.get("cursor") is None


async def test_expired_entries_read_as_absent_and_are_pruned(
    state: StateDB, clock: ManualClock, tmp_path: Path
) -> None:
    store = state.store("telegram")
    await store.put("sent:a", "{}", ttl_s=60)
    await store.put("forever", "1")
    clock.advance(59)
    assert await store.get("sent:a") == "{}"
    clock.advance(2)
    assert await store.get("sent:a") is None and await store.get("forever") == "1"
    assert await state.kv_prune() == 1
    assert rows(tmp_path / "paibot.db", "SELECT key FROM adapter_kv") == [("forever",)]


async def test_a_busy_store_prunes_as_it_writes(state: StateDB, clock: ManualClock, tmp_path: Path) -> None:
    store = state.store("telegram")
    store.PRUNE_EVERY = 10
    for i in range(25):
        await store.put(f"sent:{i}", "{}", ttl_s=1)
        clock.advance(2)  # each entry has expired by the next write
    assert len(rows(tmp_path / "paibot.db", "SELECT key FROM adapter_kv")) <= 10


async def test_the_app_gives_each_adapter_its_own_store_and_prunes_at_start(
    tmp_path: Path, clock: ManualClock
) -> None:
    made: dict[str, Any] = {}

    def create(name: str) -> Any:
        def build(cfg: Any, env: Any) -> Any:
            made[name] = env.store
            return FakeAdapter(platform=name)

        return build

    catalog = PluginCatalog.of(*(AdapterPlugin(n, Enabled, create(n)) for n in ("alpha", "beta")))
    settings = parse_settings(f"bot: {{data_dir: '{tmp_path}'}}\n", env={}, plugins=catalog)
    earlier = StateDB(tmp_path / "paibot.db", clock=clock.now)
    await earlier.store("alpha").put("old", "x", ttl_s=60)
    earlier.close()
    clock.advance(3600)
    app = App(settings, plugins=catalog, memory=FakeMemory(), skills=[], clock=clock)
    await app.start()
    try:
        await made["alpha"].put("k", "a")
        assert await made["beta"].get("k") is None
        assert rows(tmp_path / "paibot.db", "SELECT namespace, key FROM adapter_kv") == [("alpha", "k")]
    finally:
        await app.stop()


async def test_telegram_keeps_its_send_journal_in_its_store_with_an_expiry(tmp_path: Path) -> None:
    fake = await FakeTelegram().start()
    fake.chat(-100500)
    state = StateDB(tmp_path / "paibot.db")
    adapter = make_adapter(fake, tmp_path, store=state.store("telegram"))
    try:
        await adapter.start(RecordingSink())
        await adapter.send(
            Outgoing(ChatRef("telegram", "-100500"), "hello", idempotency_key="telegram:-100500:1")
        )
    finally:
        await adapter.stop()
        await fake.close()
        state.close()
    db = tmp_path / "paibot.db"
    assert rows(db, "SELECT key FROM cursors WHERE key LIKE '%sent%'") == []
    ((key, expires),) = rows(db, "SELECT key, expires_at FROM adapter_kv WHERE namespace='telegram'")
    assert key.startswith("sent:telegram:-100500:1:")
    left = datetime.fromisoformat(expires) - datetime.now(timezone.utc)
    assert timedelta(seconds=KEEP_S - 3600) < left <= timedelta(seconds=KEEP_S)
