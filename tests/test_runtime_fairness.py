"""The inbox worker serves groups fairly: one event in flight per group, a global cap, and a group back from
quiet is taken at once while other groups work through backlogs. Real inbox (SQLite), a handler whose
events wait at gates the test opens; nothing here waits on time."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

from bot.events import Message
from bot.runtime import InboxWorker
from bot.state import StateDB
from tests.fakes import make_message


class GatedHandler:
    """Every event waits until the test releases it; records what runs at once."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self.peak_per_group: Counter[str] = Counter()
        self.peak = 0
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.changed = asyncio.Condition()

    async def __call__(self, event: Message) -> None:
        key = event.chat.chat_id
        self.running[key] += 1
        self.peak_per_group[key] = max(self.peak_per_group[key], self.running[key])
        self.peak = max(self.peak, sum(self.running.values()))
        self.started.append(event.text)
        async with self.changed:
            self.changed.notify_all()
        try:
            await self.gates[event.text].wait()
        finally:
            self.running[key] -= 1

    async def until(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout)

    def release(self, text: str) -> None:
        self.gates[text].set()


async def test_a_quiet_group_is_taken_at_once_while_backlogs_hold_the_other_slots(tmp_path):
    state = StateDB(tmp_path / "paibot.db")
    handler = GatedHandler()
    worker = InboxWorker(state, handler, parallel=4, reserve=1)
    worker.start()
    try:
        noisy = [make_message(f"n{g}-{i}", chat=f"noisy{g}") for i in range(5) for g in range(3)]
        await state.submit(noisy)
        await handler.until(lambda: len(handler.started) == 3)  # each group's first question
        for g in range(3):
            handler.release(f"n{g}-0")
        # their backlogs now run, at most parallel - reserve of them
        await handler.until(lambda: len(handler.started) == 6)
        await state.submit([make_message("quiet question", chat="quiet")])
        await handler.until(lambda: "quiet question" in handler.started)
        assert sum(handler.running.values()) == 4  # the three backlogs are still stuck at their gates
        print(f"worker: the quiet group started while {sum(handler.running.values()) - 1} backlogged groups "
              f"held their slots and {worker.lanes.queued} events waited")
        for text in [m.text for m in noisy] + ["quiet question"]:
            handler.release(text)
        await worker.drain()
        assert handler.peak <= 4
        assert max(handler.peak_per_group.values()) == 1
        assert await state.counts() == {"done": 16}
    finally:
        for gate in handler.gates.values():
            gate.set()
        await worker.stop()
        state.close()


async def test_events_of_one_group_keep_their_order_under_the_cap(tmp_path):
    state = StateDB(tmp_path / "paibot.db")
    seen: list[str] = []

    async def handler(event: Message) -> None:
        seen.append(event.text)

    worker = InboxWorker(state, handler, parallel=2, reserve=1)
    worker.start()
    try:
        await state.submit([make_message(f"{g}:{i}", chat=f"g{g}") for i in range(30) for g in range(5)])
        await worker.drain()
        for g in range(5):
            assert [t for t in seen if t.startswith(f"{g}:")] == [f"{g}:{i}" for i in range(30)]
        assert len(seen) == 150
    finally:
        await worker.stop()
        state.close()


async def test_concurrent_submits_share_a_commit_and_one_that_fails_fails_alone(tmp_path):
    """Submits arriving together go to disk in one transaction; each keeps its own outcome: the new count,
    a redelivery recognised, or the error of the one whose events the policy could not judge."""

    class Policy:
        def serves(self, chat: object) -> bool:
            return True

        def admit(self, msg: Message, flags: object) -> bool:
            if msg.text == "boom":
                raise ValueError("cannot judge this one")
            return msg.text != "refused"

    state = StateDB(tmp_path / "paibot.db", policy=Policy())  # type: ignore[arg-type]
    try:
        first = make_message("hello", chat="a")
        assert await state.submit([first]) == 1
        outcomes = await asyncio.gather(
            state.submit([first], cursor_key="web", cursor="7"),  # a redelivery: nothing new
            state.submit([make_message("one", chat="a"), make_message("refused", chat="b")]),
            state.submit([make_message("two", chat="c"), make_message("boom", chat="c")]),
            state.submit([make_message("three", chat="d")]),
            return_exceptions=True,
        )
        assert outcomes[:2] == [0, 2] and outcomes[3] == 1
        assert isinstance(outcomes[2], ValueError)  # and "two", submitted with it, was not kept either
        assert await state.cursor("web") == "7"
        assert sorted(item.event.text for item in await state.pending()) == ["hello", "one", "three"]
        assert await state.counts() == {"pending": 3, "refused": 1}
    finally:
        state.close()
