"""Fair lanes (bot.lanes): one event in flight per group, a global cap, the least-served lane first, and a
reserve of slots for groups back from quiet. Pure bookkeeping, so the scheduling is simulated exactly: a
simulated clock of answers that take fixed times, no real time anywhere."""

from __future__ import annotations

import heapq
import random

import pytest

from bot.lanes import FairLanes


def take_all(lanes: FairLanes[str]) -> list[tuple[str, str]]:
    out = []
    while (got := lanes.take()) is not None:
        out.append(got)
    return out


def test_a_lane_runs_one_event_at_a_time_in_order():
    lanes: FairLanes[str] = FairLanes(cap=4)
    for i in range(3):
        lanes.push("a", f"a{i}")
    assert take_all(lanes) == [("a", "a0")]
    lanes.done("a", 1.0)
    assert take_all(lanes) == [("a", "a1")]
    lanes.done("a", 1.0)
    assert take_all(lanes) == [("a", "a2")]
    lanes.done("a", 1.0)
    assert lanes.take() is None and lanes.queued == 0 and lanes.running == 0


def test_the_global_cap_holds():
    lanes: FairLanes[str] = FairLanes(cap=2)
    for key in "abcde":
        lanes.push(key, key)
    assert [k for k, _ in take_all(lanes)] == ["a", "b"]
    assert lanes.running == 2 and lanes.queued == 3
    lanes.done("a", 1.0)
    assert [k for k, _ in take_all(lanes)] == ["c"]


def test_a_group_back_from_quiet_goes_before_every_backlog():
    lanes: FairLanes[str] = FairLanes(cap=1)
    for key in ("noisy1", "noisy2"):
        for i in range(20):
            lanes.push(key, f"{key}-{i}")
    for _ in range(6):  # the noisy groups have had a few answers each
        key, _ = lanes.take()
        lanes.done(key, 5.0)
    key, _ = lanes.take()
    lanes.push("quiet", "hello?")
    lanes.done(key, 5.0)
    assert lanes.take() == ("quiet", "hello?")


def test_service_is_shared_by_time_not_by_count():
    """A group whose events take 5 s gets one event for every five of a group whose events take 1 s."""
    lanes: FairLanes[str] = FairLanes(cap=1)
    cost = {"slow": 5.0, "fast": 1.0}
    for key in cost:
        for i in range(100):
            lanes.push(key, key)
    served = {"slow": 0.0, "fast": 0.0}
    for _ in range(60):
        key, _ = lanes.take()
        lanes.done(key, cost[key])
        served[key] += cost[key]
    assert abs(served["slow"] - served["fast"]) <= 5.0


def test_the_reserve_is_kept_for_groups_back_from_quiet():
    lanes: FairLanes[str] = FairLanes(cap=4, reserve=1)
    for key in ("n1", "n2", "n3", "n4"):
        for i in range(5):
            lanes.push(key, key)
    first = take_all(lanes)  # each one's first event came to an empty lane: they may take every slot
    assert len(first) == 4
    for key, _ in first:
        lanes.done(key, 5.0)
    # now they work through backlogs: at most cap - reserve of them run, one slot waits for a quiet group
    assert len(take_all(lanes)) == 3
    lanes.push("quiet", "hello?")
    assert lanes.take() == ("quiet", "hello?")


def test_a_backlog_is_not_back_from_quiet():
    lanes: FairLanes[str] = FairLanes(cap=1)
    lanes.push("a", "a0")
    lanes.push("a", "a1")
    lanes.push("b", "b0")
    assert lanes.take() == ("a", "a0")
    lanes.done("a", 0.01)
    lanes.push("c", "c0")
    # b and c asked to empty lanes; a's second event is a backlog
    assert [lanes.take(), lanes.done("b", 0.01), lanes.take(), lanes.done("c", 0.01), lanes.take()] == [
        ("b", "b0"), None, ("c", "c0"), None, ("a", "a1")]


def test_hold_keeps_the_lane_out_until_resumed():
    lanes: FairLanes[str] = FairLanes(cap=2)
    lanes.push("a", "a0")
    lanes.push("a", "a1")
    key, item = lanes.take()
    lanes.done(key, 0.1, hold=True)  # e.g. its platform is unreachable
    assert lanes.take() is None and lanes.running == 0
    lanes.resume("a", item)
    assert lanes.take() == ("a", "a0")


def test_drain_returns_what_is_queued():
    lanes: FairLanes[str] = FairLanes(cap=1)
    for key in "abc":
        lanes.push(key, key)
    lanes.take()
    assert sorted(lanes.drain()) == ["b", "c"]
    assert lanes.take() is None


def test_idle_groups_leave_no_lane_behind():
    lanes: FairLanes[str] = FairLanes(cap=8)
    for n in range(2000):
        key = f"g{n}"
        lanes.push(key, key)
        got = lanes.take()
        assert got is not None
        lanes.done(got[0], 1.0)
    assert lanes.lanes == 0
    assert len(lanes._lanes) < 300  # swept: an idle group costs nothing


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        FairLanes(cap=0)
    with pytest.raises(ValueError):
        FairLanes(cap=4, reserve=4)


def simulate(lanes: FairLanes[str], noisy: int, answer_s: float, quiet_at: list[float]) -> list[float]:
    """Noisy groups keep a backlog of answers (each ``answer_s``) while a quiet group asks at each time of
    ``quiet_at`` (or once its previous answer is out, if later). Returns the quiet group's waits before its
    answers started, in simulated seconds."""
    for g in range(noisy):
        for _ in range(1000):
            lanes.push(f"noisy{g}", "n")
    now, ends, waits = 0.0, [], []
    asks = sorted(quiet_at)
    asked_at: float | None = None
    quiet_busy = False

    def start_what_may() -> None:
        nonlocal asked_at
        while (got := lanes.take()) is not None:
            key, _ = got
            if key == "quiet":
                assert asked_at is not None
                waits.append(now - asked_at)
                asked_at = None
            heapq.heappush(ends, (now + answer_s, key))

    start_what_may()
    while asks or quiet_busy:
        if asks and not quiet_busy and asks[0] <= ends[0][0]:
            now = max(now, asks.pop(0))
            asked_at, quiet_busy = now, True
            lanes.push("quiet", "q")
        else:
            now, key = heapq.heappop(ends)
            lanes.done(key, answer_s)
            quiet_busy = quiet_busy and not (key == "quiet")
        start_what_may()
    return waits


def asks_after_the_first_round(noisy: int, cap: int) -> list[float]:
    """30 questions at random times once every noisy group has had its first answer (until then each of
    them is a group that asked one thing, as quiet as the quiet group; see the last test)."""
    rng = random.Random(noisy)
    first_round = (noisy // cap + 1) * 5.0
    return [rng.uniform(first_round, first_round + 400) for _ in range(30)]


@pytest.mark.parametrize("noisy", [8, 40, 200])
def test_a_quiet_group_waits_at_most_one_answer_whatever_the_backlog(noisy):
    waits = simulate(FairLanes(cap=8, reserve=0), noisy, 5.0, asks_after_the_first_round(noisy, 8))
    assert len(waits) == 30
    assert max(waits) <= 5.0
    print(f"{noisy} noisy groups, cap 8, no reserve: the quiet group's longest wait {max(waits):.2f} s "
          f"(answers take 5 s)")


@pytest.mark.parametrize("noisy", [8, 40, 200])
def test_with_a_reserve_a_quiet_group_starts_at_once(noisy):
    waits = simulate(FairLanes(cap=8, reserve=2), noisy, 5.0, asks_after_the_first_round(noisy, 8))
    assert waits == [0.0] * 30


def test_groups_that_all_ask_at_once_are_served_in_arrival_order():
    """200 groups asking one thing each at the same moment are all quiet groups: the cap serves them in
    the order they asked, eight at a time, before anyone's second question."""
    lanes: FairLanes[str] = FairLanes(cap=8, reserve=2)
    for g in range(200):
        lanes.push(f"g{g}", "first")
        lanes.push(f"g{g}", "second")
    order = []
    while len(order) < 400:
        batch = take_all(lanes)
        order += batch
        for key, _ in batch:
            lanes.done(key, 5.0)
    assert [item for _, item in order[:200]] == ["first"] * 200
    assert [key for key, _ in order[:200]] == [f"g{g}" for g in range(200)]
