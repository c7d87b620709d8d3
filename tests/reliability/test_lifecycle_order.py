"""Start and stop order of the composition root, as crashes and SIGTERM exercise it.

* After a crash the inbox holds events that were never handled. They are handled at the next start, and
  their replies need the platform's adapter: while it is still connecting they wait for it, without using
  up attempts (a slow-connecting adapter used to make every pending mention fail three times and land in
  the dead-letter table). The worker runs from the start, so other platforms are served meanwhile.
* On a graceful stop, work in flight finishes and its reply still reaches the platform: the worker drains
  before the adapters stop (they used to stop first, failing the reply and counting an attempt).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.app import App
from bot.config import parse_settings
from bot.errors import DeliveryError
from bot.events import Outgoing, SentRef
from bot.ports import Completion, IntakeSink, ToolSpec, Usage
from bot.state import StateDB
from tests.fakes import FakeAdapter, FakeMemory, ManualClock, make_message
from tests.reliability.harness import figure


class PlatformAdapter(FakeAdapter):
    """A fake platform that takes a while to connect and refuses sends unless connected."""

    def __init__(self, connect_s: float = 0.0) -> None:
        super().__init__()
        self.connect_s = connect_s
        self.connected = False

    async def start(self, sink: IntakeSink) -> None:
        await asyncio.sleep(self.connect_s)  # login, gateway handshake...
        await super().start(sink)
        self.connected = True

    async def stop(self) -> None:
        self.connected = False
        await super().stop()

    async def send(self, out: Outgoing) -> SentRef:
        if not self.connected:
            raise DeliveryError("not connected")
        return await super().send(out)


class GatedLLM:
    """A model that answers only when the test opens the gate (work in flight at a chosen moment)."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.gate = asyncio.Event()

    async def complete(self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                       timeout_s: float = 60.0) -> Completion:  # fmt: skip
        self.called.set()
        await self.gate.wait()
        return Completion(text="the answer", usage=Usage(1, 1), model=model)


def settings(tmp_path: Path, llm: bool = False):  # type: ignore[no-untyped-def]
    model = "llm: {model: scripted}\n" if llm else ""
    return parse_settings(f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n" + model)


async def test_events_left_pending_by_a_crash_are_answered_once_the_slow_adapter_is_up(tmp_path: Path) -> None:
    # What a crash leaves: mentions committed to the inbox, never handled.
    state = StateDB(tmp_path / "paibot.db")
    pending = [make_message(f"@Pai question {i}?", mentions_me=True, msg_id=f"q{i}") for i in range(3)]
    await state.submit(pending)
    state.close()

    adapter = PlatformAdapter(connect_s=2.5)  # longer than the worker's three quick attempts
    app = App(settings(tmp_path), adapters={"fake": adapter}, memory=FakeMemory(), skills=[], clock=ManualClock())
    await app.start()
    try:
        await app.drain(30)
        assert app.services is not None
        dead = await app.services.state.dead_letters()
        counts = await app.services.state.counts()
    finally:
        await app.stop()
    line = figure("pending at start", pending=len(pending), answered=len(adapter.sent), dead_letters=len(dead))
    assert dead == [], line
    assert sorted(o.reply_to for o in adapter.sent) == ["q0", "q1", "q2"], line
    assert counts == {"done": 3}, line


async def test_graceful_stop_lets_the_reply_in_flight_reach_the_platform(tmp_path: Path) -> None:
    adapter = PlatformAdapter()
    llm = GatedLLM()
    app = App(settings(tmp_path, llm=True), llm=llm, adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=ManualClock())  # fmt: skip
    await app.start()
    await adapter.inject(make_message("@Pai are you there?", mentions_me=True, msg_id="inflight"))
    await asyncio.wait_for(llm.called.wait(), 10)
    worker = app.worker
    assert worker is not None
    stopping = asyncio.create_task(app.stop(grace_s=10), name="stop")

    async def stop_begun() -> None:
        while not worker.stopping:
            await asyncio.sleep(0)

    await asyncio.wait_for(stop_begun(), 10)  # the stop has begun while the model is still thinking
    llm.gate.set()
    await asyncio.wait_for(stopping, 30)

    state = StateDB(tmp_path / "paibot.db")
    try:
        counts = await state.counts()
        ledger = await state.reply_state("fake:g1:inflight")
        attempts = state._conn.execute("SELECT attempts FROM inbox").fetchone()[0]
    finally:
        state.close()
    line = figure("stop with work in flight", replies=len(adapter.sent), inbox=counts, failed_attempts=attempts)
    assert [o.text for o in adapter.sent] == ["the answer"], line
    assert counts == {"done": 1} and ledger == "sent" and attempts == 0, line
