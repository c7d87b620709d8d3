"""Riding out platform outages (``bot.supervisor``): the backoff, the connect loop and the supervisor of one
adapter's start, driven by a scripted adapter and clocks the test controls (no sleeping)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from bot.errors import AdapterConfigError, CredentialsRejected, PlatformUnavailable
from bot.supervisor import (
    CONNECTING,
    RUNNING,
    STOPPED,
    AdapterSupervisor,
    Backoff,
    backoff_delay,
    keep_connecting,
)
from tests.fakes import FlakyAdapter, GatedClock, ManualClock, RecordingInbox, WatchedAdapter

URL = "https://api.example.test"


def down(detail: str = "connection refused", retry_after: float | None = None) -> PlatformUnavailable:
    return PlatformUnavailable(f"cannot reach {URL} ({detail})", retry_after=retry_after)


# --------------------------------------------------------------------------- backoff


def test_backoff_grows_with_jitter_and_never_passes_the_cap() -> None:
    backoff = Backoff(random.Random(7), base_s=1.0, cap_s=60.0)
    delays = [backoff.next_delay() for _ in range(200)]
    for n, d in enumerate(delays[:6]):
        assert 2**n / 2 <= d <= 2**n
    assert max(delays) <= 60.0 and min(delays[6:]) >= 30.0
    assert len(set(delays)) == len(delays)  # jittered: peers that failed together spread out
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_the_outage_wait_of_a_days_long_outage_stays_at_the_cap() -> None:
    """The inbox and relay workers count an event's outage retries without end: 2^1100 once overflowed."""
    rng = random.Random(3)
    assert all(30.0 <= backoff_delay(n, 1.0, 60.0, rng) <= 60.0 for n in (6, 64, 1100, 10**6))
    assert 0.5 <= backoff_delay(0, 1.0, 60.0, rng) <= 1.0


def test_backoff_rejects_a_cap_below_its_base() -> None:
    with pytest.raises(ValueError):
        Backoff(random.Random(), base_s=5.0, cap_s=1.0)


# --------------------------------------------------------------------------- the connect loop


async def test_an_unreachable_platform_is_retried_until_it_answers(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[BaseException | None] = [down(), down(), down(), None]
    clock = ManualClock()

    async def attempt() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "connected"

    backoff = Backoff(random.Random(1))
    with caplog.at_level(logging.DEBUG, logger="test.connect"):
        result = await keep_connecting(attempt, name="telegram", clock=clock, backoff=backoff,
                                       log=logging.getLogger("test.connect"))
    assert result == "connected"
    assert len(clock.slept) == 3 and clock.slept[0] <= 1.0 < clock.slept[2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One line for the whole series: what failed (with the URL) and when the next try is.
    assert warnings == [f"telegram: cannot reach {URL} (connection refused); next try in "
                        f"{clock.slept[0]:.1f}s (retrying in the background, at most 60s apart)"]
    assert sum("attempt" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG) == 2
    assert any("connected after 3 failed attempt(s)" in r.getMessage() for r in caplog.records)


async def test_a_new_reason_starts_a_new_series_and_a_long_outage_is_recalled(caplog: pytest.LogCaptureFixture
                                                                             ) -> None:
    outcomes: list[BaseException | None] = [down("refused"), *[down("DNS failure")] * 31, None]
    clock = ManualClock()

    async def attempt() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    with caplog.at_level(logging.WARNING, logger="test.connect"):
        await keep_connecting(attempt, name="matrix", clock=clock, backoff=Backoff(random.Random(2)),
                              log=logging.getLogger("test.connect"))
    lines = [r.getMessage() for r in caplog.records]
    assert "refused" in lines[0] and "DNS failure" in lines[1]
    reminders = [line for line in lines[2:] if line.startswith("matrix: still not connected after")]
    assert reminders and len(reminders) <= sum(clock.slept) / 600 + 1
    assert max(clock.slept) <= 60.0


async def test_retry_after_is_the_least_wait() -> None:
    outcomes: list[BaseException | None] = [down("429", retry_after=42.0), None]
    clock = ManualClock()

    async def attempt() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    await keep_connecting(attempt, name="discord", clock=clock, backoff=Backoff(random.Random(3)),
                          log=logging.getLogger("test.connect"))
    assert clock.slept == [42.0]


async def test_a_refusal_is_not_retried() -> None:
    clock = ManualClock()

    async def attempt() -> None:
        raise CredentialsRejected("the token was refused: get a new one from the portal")

    with pytest.raises(CredentialsRejected):
        await keep_connecting(attempt, name="discord", clock=clock, backoff=Backoff(random.Random(4)),
                              log=logging.getLogger("test.connect"))
    assert clock.slept == []


# --------------------------------------------------------------------------- the supervisor of one adapter


async def test_the_supervisor_settles_after_the_first_failure_and_connects_in_the_background() -> None:
    adapter = FlakyAdapter(down(), down())
    clock = GatedClock()
    changes: list[tuple[str, str]] = []
    sup = AdapterSupervisor("fake", adapter, RecordingInbox(), clock=clock, rng=random.Random(5),
                            on_change=lambda s: changes.append((s.state, s.reason)))
    sup.launch()
    await asyncio.wait_for(sup.settled.wait(), 10)
    assert sup.state == CONNECTING and URL in sup.reason  # the first attempt failed: start-up goes on
    await clock.sleeping(1)
    await clock.release()
    await clock.sleeping(2)
    assert adapter.starts == 2 and sup.state == CONNECTING
    await clock.release()
    await asyncio.wait_for(_until(lambda: sup.state == RUNNING), 10)
    assert adapter.starts == 3 and adapter.sink is not None
    assert changes == [(CONNECTING, f"the fake adapter is not connected yet: {down()}"), (RUNNING, "")]
    await sup.stop()
    assert adapter.stops == 1 and adapter.sink is None


async def test_refused_credentials_stop_the_adapter_with_the_instruction(caplog: pytest.LogCaptureFixture
                                                                          ) -> None:
    instruction = "Telegram rejected the bot token: ask @BotFather for a new one and start again."
    adapter = FlakyAdapter(down(), CredentialsRejected(instruction))
    clock = GatedClock()
    sup = AdapterSupervisor("telegram", adapter, RecordingInbox(), clock=clock, rng=random.Random(6))
    sup.launch()
    await clock.sleeping(1)
    with caplog.at_level(logging.ERROR, logger="paibot.supervisor"):
        await clock.release()
        await asyncio.wait_for(_until(lambda: sup.state == STOPPED), 10)
    assert sup.reason == instruction
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"telegram: stopped: {instruction}"]
    assert adapter.stops == 1  # whatever the failed attempt left open is closed
    await sup.stop()
    assert adapter.stops == 1


@pytest.mark.parametrize("error", [AdapterConfigError("adapters.web.port is taken"), RuntimeError("a bug")])
async def test_any_other_failure_stops_only_this_adapter(error: Exception) -> None:
    adapter = FlakyAdapter(error)
    sup = AdapterSupervisor("web", adapter, RecordingInbox(), clock=GatedClock(), rng=random.Random(7))
    sup.launch()
    await asyncio.wait_for(sup.settled.wait(), 10)
    assert sup.state == STOPPED and str(error) in sup.reason
    assert adapter.starts == 1


async def test_stop_while_connecting_cancels_the_attempts_cleanly() -> None:
    adapter = FlakyAdapter(*[down()] * 100)
    clock = GatedClock()
    sup = AdapterSupervisor("matrix", adapter, RecordingInbox(), clock=clock, rng=random.Random(8))
    sup.launch()
    await clock.sleeping(1)
    await sup.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "connect:matrix"]
    assert adapter.starts == 1 and adapter.stops == 1


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_lost_platform_is_connected_again_and_a_flapping_one_is_not_hammered() -> None:
    adapter = WatchedAdapter()
    clock = GatedClock()
    states: list[str] = []
    sup = AdapterSupervisor("discord", adapter, RecordingInbox(), clock=clock, rng=random.Random(9),
                            on_change=lambda s: states.append(s.state))
    sup.launch()
    await asyncio.wait_for(_until(lambda: sup.state == RUNNING), 10)
    for n in range(1, 7):  # the connection drops again right after each reconnection
        adapter.lose(down("gateway closed"))
        await clock.sleeping(n)
        assert sup.state == CONNECTING and "lost its connection" in sup.reason
        await clock.release()
        await asyncio.wait_for(_until(lambda: adapter.starts == n + 1 and sup.state == RUNNING), 10)
    assert states == [RUNNING] + [CONNECTING, RUNNING] * 6
    assert clock.slept[-1] > 16.0  # growing waits: short-lived connections do not start the backoff over
    await sup.stop()
    assert adapter.stops == 1


async def test_a_refusal_reported_while_running_stops_the_adapter() -> None:
    adapter = WatchedAdapter()
    sup = AdapterSupervisor("discord", adapter, RecordingInbox(), clock=GatedClock(), rng=random.Random(10))
    sup.launch()
    await asyncio.wait_for(_until(lambda: sup.state == RUNNING), 10)
    adapter.lose(CredentialsRejected("Discord rejected the bot token: reset it in the portal"))
    await asyncio.wait_for(_until(lambda: sup.state == STOPPED), 10)
    assert sup.reason == "Discord rejected the bot token: reset it in the portal"
    assert adapter.stops == 1
