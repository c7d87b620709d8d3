"""Admission of new groups: how many groups (and direct chats) the bot starts serving per hour.

Unless the operator lists the groups it serves (``access.allowed_groups``), anyone can add the bot to a
group, or open a direct chat, and every new group would come with its own per-group budget, memory and lane.
So a group the bot has never served is *admitted* only while fewer than ``limits.new_groups_per_hour``
groups were admitted in the last hour; once admitted it stays admitted (durably, ``StateDB.admitted_groups``).
Groups the operator names in ``config.yaml`` (``groups:``, ``pais:``, ``access.allowed_groups``) are always
admitted. A group that is not admitted is not recorded and gets no answer; when it addresses the bot it is
told once an hour (and at most ``NOTICES_PER_HOUR`` groups are told per hour, bot-wide) to try again later.
Each later message asks again, so it is admitted as soon as the hour has room.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.config import Settings
from bot.i18n import N_
from bot.limits import Verdict
from bot.state import StateDB

HOUR = timedelta(hours=1)
NOTICES_PER_HOUR = 60  # groups told "not now" per hour, bot-wide: the notices themselves stay bounded

REFUSAL = N_("I can't take on another new group right now. Please try again in an hour.")


class Admission:
    def __init__(self, settings: Settings, state: StateDB, now: Callable[[], datetime]) -> None:
        self._settings = settings
        self._state = state
        self._now = now
        self._admitted: set[str] = set()  # known admitted (a cache; the table is the truth)
        self._recent: deque[datetime] | None = None  # admissions in the last hour, oldest first
        self._told: dict[str, datetime] = {}
        self._notices: deque[datetime] = deque()

    def configured(self, group_key: str) -> bool:
        s = self._settings
        return (
            group_key in s.groups
            or group_key in s.access.allowed_groups
            or any(group_key in keys for keys in s.pais.values())
        )

    async def check(self, group_key: str) -> Verdict:
        """Admit the group if it is served already, configured, or the hour has room; else refuse it
        (``notify`` when it should be told, at most once an hour)."""
        if group_key in self._admitted:
            return Verdict(True)
        if self.configured(group_key) or await self._state.is_admitted(group_key):
            self._admitted.add(group_key)
            return Verdict(True)
        now = self._now()
        recent = await self._window(now)
        cap = self._settings.limits.new_groups_per_hour
        if cap <= 0 or len(recent) < cap:
            recent.append(now)  # before the await: concurrent lanes see the slot taken
            self._admitted.add(group_key)
            await self._state.admit_group(group_key, now)
            self._told.pop(group_key, None)
            return Verdict(True)
        return Verdict(False, "new groups", notify=self._may_tell(group_key, now))

    async def _window(self, now: datetime) -> deque[datetime]:
        if self._recent is None:
            self._recent = deque(await self._state.admitted_since(now - HOUR))
        while self._recent and now - self._recent[0] >= HOUR:
            self._recent.popleft()
        return self._recent

    def _may_tell(self, group_key: str, now: datetime) -> bool:
        last = self._told.get(group_key)
        if last is not None and now - last < HOUR:
            return False
        while self._notices and now - self._notices[0] >= HOUR:
            self._notices.popleft()
        if len(self._notices) >= NOTICES_PER_HOUR:
            return False
        self._notices.append(now)
        self._told[group_key] = now
        if len(self._told) > 4 * NOTICES_PER_HOUR:  # forget groups told more than an hour ago
            self._told = {k: t for k, t in self._told.items() if now - t < HOUR}
        return True
