"""The web group's storage quotas: bytes one group may keep and bytes all groups together may keep, with
space reserved before it is written (see ``StorageQuota``). Pure logic; ``adapters.web.adapter`` measures the
store and ``adapters.web.http`` reserves a message's space before reading its body."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bot.i18n import N_, Text


class StorageQuota:
    """Bytes a group may keep (message text and files) and bytes all groups together may keep.

    Space is reserved before it is written and checked and counted in one step under a lock, so concurrent
    uploads can never together pass a quota: a message reserves what its request says it holds (its
    ``Content-Length``) before its body is read, and the bytes it actually writes are ``used`` from that,
    growing the reservation when there is no length or it was short. It is ``kept`` (only what was used) once
    the message is stored and ``released`` when it is refused or fails. Stored usage
    is measured from the store the first time a group is seen (``measure(group)``; ``measure(None)`` for all)
    and counted up as reservations are kept; a group close to its quota is measured again when a reservation
    opens, so what was deleted meanwhile (forgetting, retention) counts."""

    def __init__(self, group_bytes: int, total_bytes: int, measure: Callable[[str | None], int]) -> None:
        self.group_bytes = group_bytes
        self.total_bytes = total_bytes
        self._measure = measure
        self._lock = threading.Lock()
        self._stored: dict[str, int] = {}  # measured + kept since
        self._total: int | None = None
        self._pending: dict[str, int] = {}  # reserved, not yet kept or released
        self._pending_total = 0
        self._kept: dict[str, int] = {}  # bytes ever kept per group, and in all: what a measurement may miss
        self._kept_total = 0

    def _near(self, group: str, size: int) -> tuple[bool, bool]:
        """Whether ``size`` more bytes would bring the group, and all groups together, within a tenth of their
        quota (or their usage is not counted yet): then the store is measured again before reserving."""
        used, total = self._stored.get(group), self._total
        near_group = bool(self.group_bytes) and (used is None or used + self._pending.get(group, 0) + size
                                                 > 0.9 * self.group_bytes)  # fmt: skip
        near_total = bool(self.total_bytes) and (total is None or total + self._pending_total + size
                                                 > 0.9 * self.total_bytes)  # fmt: skip
        return near_group, near_total

    def counted(self, group: str, size: int) -> bool:
        """Whether ``reserve`` can answer from its counts alone, without measuring the store (then it never
        blocks: the common case, a group far from full)."""
        near_group, near_total = self._near(group, size)
        return group in self._stored and self._total is not None and not near_group and not near_total

    def reserve(self, group: str, size: int) -> Reservation:
        """A reservation of ``size`` bytes in ``group``; ``QuotaExceeded`` (nothing reserved) past a quota.
        Blocking (it may measure the store) unless ``counted``: run it off the loop then."""
        used, total = self._stored.get(group), self._total
        near_group, near_total = self._near(group, size)
        # A message kept while the store is measured may be missing from the measurement: what was kept
        # meanwhile is added (counted twice at worst, until the next measurement; never missed).
        kept_before, kept_total_before = self._kept.get(group, 0), self._kept_total
        measured_group = self._measure(group) if used is None or near_group else None
        measured_total = self._measure(None) if total is None or near_total else None
        with self._lock:
            if measured_group is not None:
                self._stored[group] = measured_group + self._kept.get(group, 0) - kept_before
            if measured_total is not None:
                self._total = measured_total + self._kept_total - kept_total_before
        reservation = Reservation(self, group)
        reservation.grow(size)
        return reservation

    def _take(self, group: str, size: int) -> Text | None:
        """Reserve ``size`` more bytes in ``group`` if both quotas allow it (under ``_lock``)."""
        pending = self._pending.get(group, 0)
        if self.group_bytes and self._stored.get(group, 0) + pending + size > self.group_bytes:
            return Text(N_("This group has used its storage ({mb} MB)."), mb=self.group_bytes // 2**20)
        if self.total_bytes and (self._total or 0) + self._pending_total + size > self.total_bytes:
            return Text(N_("The web group's storage is full ({mb} MB)."), mb=self.total_bytes // 2**20)
        self._pending[group] = pending + size
        self._pending_total += size
        return None

    def _settle(self, group: str, reserved: int, kept: int) -> None:
        """Drop a reservation of ``reserved`` bytes; ``kept`` of them are stored now."""
        with self._lock:
            left = self._pending.get(group, 0) - reserved
            if left > 0:
                self._pending[group] = left
            else:
                self._pending.pop(group, None)
            self._pending_total -= reserved
            if kept:
                self._stored[group] = self._stored.get(group, 0) + kept
                if self._total is not None:
                    self._total += kept
                self._kept[group] = self._kept.get(group, 0) + kept
                self._kept_total += kept

    def reserved(self, group: str | None = None) -> int:
        """Bytes reserved and not yet kept or released (of ``group``, or of all groups)."""
        return self._pending_total if group is None else self._pending.get(group, 0)


class QuotaExceeded(Exception):
    """A reservation the quota refuses; ``why`` is the sentence for the person."""

    def __init__(self, why: Text) -> None:
        super().__init__(str(why))
        self.why = why


class Reservation:
    """Space reserved in a ``StorageQuota`` for one message being stored: ``size`` bytes reserved, ``used`` of
    them written. Then ``keep`` (stored: what was used counts, the rest is freed) or ``release`` (refused,
    failed: all of it is freed). Either is final; calling them again does nothing."""

    def __init__(self, quota: StorageQuota, group: str) -> None:
        self._quota = quota
        self.group = group
        self.size = 0
        self.used = 0
        self._open = True

    def use(self, size: int) -> None:
        """Count ``size`` bytes about to be written, reserving more first when they are past ``size``;
        ``QuotaExceeded`` (nothing counted) past a quota."""
        extra = self.used + size - self.size
        if extra > 0:
            self.grow(extra)
        self.used += size

    def grow(self, size: int) -> None:
        """Reserve ``size`` bytes more; ``QuotaExceeded`` (the reservation as it was) past a quota. Cheap:
        counters under a lock, so it may run on the event loop for every chunk of an upload."""
        if not self._open:
            raise RuntimeError("this reservation is settled")
        with self._quota._lock:
            why = self._quota._take(self.group, size)
        if why is not None:
            raise QuotaExceeded(why)
        self.size += size

    def keep(self) -> None:
        if self._open:
            self._open = False
            self._quota._settle(self.group, self.size, kept=self.used)

    def release(self) -> None:
        if self._open:
            self._open = False
            self._quota._settle(self.group, self.size, kept=0)
