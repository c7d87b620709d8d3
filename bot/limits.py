"""Rate limits and budgets, decided before any LLM call (the gates in ``bot.middlewares.limits``).

Sliding-window counters per member and per group (in memory: a restart forgives, which is fine for a
flood guard) and a daily token budget per group read from the durable usage ledger.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.config import LimitSettings
from bot.i18n import N_
from bot.ports import UsageLedger


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str = ""
    notify: bool = False  # tell the member once per window, never on every refused message


class RateLimiter:
    """``check_rate`` (input size, member and group windows) and ``check_budget`` decide; ``count`` records
    an allowed request at the time ``check_rate`` saw it."""

    def __init__(
        self, limits: LimitSettings, now: Callable[[], datetime], ledger: UsageLedger | None
    ) -> None:
        self._limits = limits
        self._now = now
        self._ledger = ledger
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._notified: dict[str, float] = {}

    def now(self) -> float:
        return self._now().timestamp()

    def _window_ok(self, key: str, cap: int, t: float) -> bool:
        q = self._hits[key]
        while q and t - q[0] >= 60.0:
            q.popleft()
        return len(q) < cap

    def _once(self, key: str, t: float) -> bool:
        last = self._notified.get(key)
        if last is not None and t - last < 60.0:
            return False
        self._notified[key] = t
        return True

    def check_rate(self, group_key: str, member_key: str, text: str, t: float) -> Verdict:
        """Refuse (with a reason) an oversized input or a request past the member's or the group's window."""
        if len(text) > self._limits.max_input_chars:
            return Verdict(False, "too long", notify=True)
        mkey, gkey = f"m:{group_key}:{member_key}", f"g:{group_key}"
        if not self._window_ok(mkey, self._limits.member_per_minute, t):
            return Verdict(False, "member rate", notify=self._once(mkey, t))
        if not self._window_ok(gkey, self._limits.group_per_minute, t):
            return Verdict(False, "group rate", notify=self._once(gkey, t))
        return Verdict(True)

    def check_budget(self, group_key: str, t: float) -> Verdict:
        """Refuse once the group's daily token budget is spent (a budget of 0 means none)."""
        budget = self._limits.daily_tokens_per_group
        if self._ledger is not None and budget > 0 and self._ledger.tokens_today(group_key) >= budget:
            return Verdict(False, "daily budget", notify=self._once(f"b:{group_key}", t))
        return Verdict(True)

    def count(self, group_key: str, member_key: str, t: float) -> None:
        self._hits[f"m:{group_key}:{member_key}"].append(t)
        self._hits[f"g:{group_key}"].append(t)


REFUSALS = {
    "too long": N_("That message is too long for me to take in. Could you shorten it?"),
    "member rate": N_("You're going a bit fast for me. Give me a minute."),
    "group rate": N_("This group is keeping me very busy. I'll be able to answer again in a minute."),
    "daily budget": N_("This group has used up today's thinking budget. I'll be back tomorrow."),
}
