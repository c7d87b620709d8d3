"""The clock-sync model of a watch session (``bot.skills.watch.sync``), driven by a manual clock.

A player in these tests is a simulated media element: it advances by its own playback rate times the
(manual) time that passes, its clock may run off the server's by a constant offset, and it corrects itself
only through ``correct``, as the page's script does.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.skills.watch.sync import (
    MAX_NUDGE,
    SEEK_ABOVE,
    BadCommand,
    ClockOffset,
    Playback,
    correct,
)


class ManualTime:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_playing_session_moves_with_time_and_a_paused_one_does_not():
    t = ManualTime()
    pb = Playback().play(t.now)
    t.advance(12.5)
    assert pb.position_at(t.now) == pytest.approx(12.5)
    pb = pb.pause(t.now)
    t.advance(60)
    assert pb.position_at(t.now) == pytest.approx(12.5)
    pb = pb.apply("rate", t.now, 2.0).play(t.now)
    t.advance(10)
    assert pb.position_at(t.now) == pytest.approx(32.5)


def test_a_late_joiner_computes_the_position_the_others_are_at():
    t = ManualTime()
    pb = Playback().apply("seek", t.now, 600.0).apply("play", t.now)
    t.advance(95)
    # Someone opening the page now gets the same Playback and computes the same place.
    joined = Playback.from_dict(pb.to_dict())
    assert joined.position_at(t.now) == pytest.approx(695.0)


def test_the_position_stays_within_the_media():
    t = ManualTime()
    pb = Playback(duration=30.0).play(t.now, 25.0)
    t.advance(100)
    assert pb.position_at(t.now) == 30.0 and pb.ended_at(t.now)
    assert pb.seek(t.now, 99.0).position == 30.0
    assert Playback().position_at(t.now - 10) == 0.0


@pytest.mark.parametrize(
    ("action", "value"),
    [("seek", -1), ("seek", math.nan), ("seek", "12"), ("rate", 0), ("rate", 16), ("rate", True),
     ("duration", 0), ("jump", 1), ("play", math.inf)],
)  # fmt: skip
def test_bad_commands_are_refused(action, value):
    with pytest.raises(BadCommand):
        Playback().apply(action, 0.0, value)


def test_small_drift_is_absorbed_by_speed_and_large_drift_by_a_seek():
    assert correct(10.0, 10.01, 1.0, True).kind == "none"
    behind = correct(10.0, 10.2, 1.0, True)
    assert behind.kind == "nudge" and 1.0 < behind.rate <= 1.0 + MAX_NUDGE
    ahead = correct(10.3, 10.0, 1.5, True)
    assert ahead.kind == "nudge" and 1.5 * (1 - MAX_NUDGE) <= ahead.rate < 1.5
    far = correct(5.0, 10.0, 1.0, True)
    assert far.kind == "seek" and far.position == 10.0
    assert correct(10.0, 10.3, 1.0, False).kind == "seek"  # paused: line up exactly, nothing to absorb


def test_the_clock_offset_trusts_the_shortest_round_trip():
    clock = ClockOffset()
    assert not clock.known and clock.offset == 0.0
    clock.add(sent=100.0, server=105.4, received=100.8)  # slow trip: offset 5.0 +/- 0.4
    clock.add(sent=101.0, server=106.05, received=101.1)  # fast trip: offset 5.0 +/- 0.05
    clock.add(sent=102.0, server=107.9, received=103.0)  # queued answer: offset 5.4 +/- 0.5
    assert clock.offset == pytest.approx(5.0)
    assert clock.error_bound == pytest.approx(0.05)
    clock.add(sent=104.0, server=1.0, received=103.0)  # local clock went backwards: ignored
    assert clock.offset == pytest.approx(5.0)


class SimulatedPlayer:
    """A media element whose clock is ``skew`` seconds off the server's and which starts ``lag`` late."""

    def __init__(self, skew: float, lag: float) -> None:
        self.skew = skew
        self.lag = lag
        self.position = 0.0
        self.rate = 1.0
        self.playing = False
        self.offset = ClockOffset()

    def ping(self, server_now: float, one_way: float) -> None:
        local_sent = server_now + self.skew
        self.offset.add(local_sent, server_now + one_way, local_sent + 2 * one_way)

    def tick(self, seconds: float) -> None:
        if self.playing:
            self.position += seconds * self.rate

    def sync(self, pb: Playback, server_now: float) -> float:
        local_now = server_now + self.skew
        expected = pb.position_at(local_now + self.offset.offset)
        fix = correct(self.position, expected, pb.rate, pb.playing)
        if fix.kind == "seek":
            self.position = fix.position or 0.0
        self.rate = fix.rate
        self.playing = pb.playing
        return self.position - pb.position_at(server_now)


@given(
    skew=st.floats(-3600, 3600),
    lag=st.floats(0, 3),
    one_way=st.floats(0.001, 0.2),
    rate=st.sampled_from([0.5, 1.0, 1.25, 2.0]),
)
def test_players_with_skewed_clocks_converge_under_the_bound(skew, lag, one_way, rate):
    """Whatever the clock skew, start lag and network delay, a player that syncs twice a second stays
    within the drift bound once the first correction has happened."""
    t = ManualTime()
    player = SimulatedPlayer(skew, lag)
    for _ in range(4):
        player.ping(t.now, one_way)
    pb = Playback().apply("rate", t.now, rate).apply("play", t.now)
    t.advance(lag)  # the player heard about it late and starts from 0
    player.playing, player.rate = True, rate
    worst = 0.0
    for step in range(40):
        drift = player.sync(pb, t.now)
        if step > 0:
            worst = max(worst, abs(drift))
        player.tick(0.5)
        t.advance(0.5)
    # The estimate is off by at most the one-way delay (symmetric legs here): below the seek threshold.
    assert worst <= SEEK_ABOVE + one_way * rate + 1e-6
