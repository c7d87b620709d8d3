"""The clock-sync model of a watch session: pure values and functions, no I/O, no clock of their own.

The server is the authority on *where the session is*: a ``Playback`` says "at server time ``at`` the media
was at ``position`` seconds, moving at ``rate`` (or paused)". Every member command (play, pause, seek, speed)
replaces it with a new ``Playback`` anchored at the moment the server applied it. Nothing is ticked: the
position at any later moment is computed (``position_at``), so a late joiner starts exactly where the others
are, and the server never has to stream positions.

Each player (the web page's script mirrors this module line for line, ``adapters/web/static/watch.js``):

1. estimates the offset between its clock and the server's from ping round trips (``ClockOffset``: the
   sample with the shortest round trip is the least distorted by queueing, as in NTP's clock filter);
2. computes where it *should* be (``Playback.position_at(local_now + offset)``);
3. corrects its drift with ``correct``: small drifts are absorbed by playing a little faster or slower (no
   visible jump), large ones (a stall, a late start, a backgrounded tab) by a seek.

Times are seconds (floats): server and local times are Unix epoch seconds, positions are media seconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

MIN_RATE = 0.25
MAX_RATE = 4.0
# Drift correction. Seek when further off than SEEK_ABOVE (below the 0.5 s the sessions promise, so a
# correction lands before members notice); between NUDGE_ABOVE and that, change the speed by up to
# MAX_NUDGE (10 % is barely audible) in proportion to the drift, so 0.3 s are caught up in about 3 s.
SEEK_ABOVE = 0.4
NUDGE_ABOVE = 0.04
NUDGE_GAIN = 0.5  # speed change per second of drift
MAX_NUDGE = 0.1
OFFSET_SAMPLES = 8


class BadCommand(ValueError):
    """A playback command that cannot be applied (unknown action, a position or rate out of range)."""


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadCommand(f"{what} must be a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class Playback:
    """Where a session is: ``position`` media seconds at server time ``at``, moving at ``rate`` if playing.
    ``duration`` (when known) bounds the position: a session that plays past its end stands at the end."""

    position: float = 0.0
    at: float = 0.0
    rate: float = 1.0
    playing: bool = False
    duration: float | None = None

    def position_at(self, now: float) -> float:
        """The media position at server time ``now`` (never before the anchor's position when playing)."""
        pos = self.position
        if self.playing:
            pos += max(0.0, now - self.at) * self.rate
        return self._clamp(pos)

    def ended_at(self, now: float) -> bool:
        """Whether playback has reached the end of the media by ``now``."""
        return self.duration is not None and self.position_at(now) >= self.duration

    def _clamp(self, pos: float) -> float:
        pos = max(0.0, pos)
        return min(pos, self.duration) if self.duration is not None else pos

    def _anchor(self, now: float, **changes: object) -> Playback:
        """The same playback re-anchored at ``now`` (the position it has reached), then changed."""
        here = dataclasses.replace(self, position=self.position_at(now), at=now)
        return dataclasses.replace(here, **changes)  # type: ignore[arg-type]

    def play(self, now: float, position: float | None = None) -> Playback:
        new = self._anchor(now, playing=True)
        return new if position is None else dataclasses.replace(new, position=new._clamp(position))

    def pause(self, now: float, position: float | None = None) -> Playback:
        new = self._anchor(now, playing=False)
        return new if position is None else dataclasses.replace(new, position=new._clamp(position))

    def seek(self, now: float, position: float) -> Playback:
        new = self._anchor(now)
        return dataclasses.replace(new, position=new._clamp(position))

    def with_rate(self, now: float, rate: float) -> Playback:
        return self._anchor(now, rate=rate)

    def with_duration(self, now: float, duration: float) -> Playback:
        return self._anchor(now, duration=duration)

    def apply(self, action: str, now: float, value: object = None) -> Playback:
        """Apply one member command (``play``/``pause`` with an optional position, ``seek`` to a position,
        ``rate`` to a speed, ``duration`` once a player knows it); ``BadCommand`` for anything else."""
        if action in ("play", "pause"):
            pos = None if value is None else _finite(value, "position")
            if pos is not None and pos < 0:
                raise BadCommand("position must not be negative")
            return self.play(now, pos) if action == "play" else self.pause(now, pos)
        if action == "seek":
            pos = _finite(value, "position")
            if pos < 0:
                raise BadCommand("position must not be negative")
            return self.seek(now, pos)
        if action == "rate":
            rate = _finite(value, "rate")
            if not MIN_RATE <= rate <= MAX_RATE:
                raise BadCommand(f"rate must be between {MIN_RATE} and {MAX_RATE}")
            return self.with_rate(now, rate)
        if action == "duration":
            duration = _finite(value, "duration")
            if duration <= 0 or duration > 7 * 24 * 3600:
                raise BadCommand("duration out of range")
            return self.with_duration(now, duration)
        raise BadCommand(f"unknown action {action!r}")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Playback:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Correction:
    """What a player does about its drift: ``kind`` is ``"none"`` (play at ``rate``), ``"nudge"`` (play at
    ``rate`` for a while) or ``"seek"`` (jump to ``position`` and play at ``rate``)."""

    kind: str
    rate: float
    position: float | None = None


def correct(local: float, expected: float, base_rate: float, playing: bool) -> Correction:
    """How a player at ``local`` seconds should correct towards ``expected`` (both media seconds)."""
    drift = local - expected
    if not playing:
        # Paused: only the position matters, and small differences are invisible.
        return (
            Correction("seek", base_rate, expected)
            if abs(drift) > NUDGE_ABOVE
            else Correction("none", base_rate)
        )
    if abs(drift) > SEEK_ABOVE:
        return Correction("seek", base_rate, expected)
    if abs(drift) > NUDGE_ABOVE:
        change = max(-MAX_NUDGE, min(MAX_NUDGE, -drift * NUDGE_GAIN))
        return Correction("nudge", round(base_rate * (1.0 + change), 4))
    return Correction("none", base_rate)


class ClockOffset:
    """The offset to add to a local clock to get the server's, from ping round trips.

    ``add(sent, server, received)``: a ping left at local time ``sent``, the server stamped ``server``, the
    answer arrived at local ``received``. Assuming the two legs took equally long, the offset is ``server -
    (sent + received) / 2``; its error is at most half the round trip, so the best of the last
    ``OFFSET_SAMPLES`` samples is the one with the shortest round trip.
    """

    def __init__(self, keep: int = OFFSET_SAMPLES) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)

    def add(self, sent: float, server: float, received: float) -> None:
        rtt = received - sent
        if rtt < 0 or not all(math.isfinite(x) for x in (sent, server, received)):
            return  # a clock that went backwards between the two readings: the sample means nothing
        self._samples.append((rtt, server - (sent + received) / 2))

    @property
    def known(self) -> bool:
        return bool(self._samples)

    @property
    def offset(self) -> float:
        return min(self._samples)[1] if self._samples else 0.0

    @property
    def error_bound(self) -> float:
        """Half the best round trip: how wrong ``offset`` can be (infinite before the first sample)."""
        return min(self._samples)[0] / 2 if self._samples else math.inf
