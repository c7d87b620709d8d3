"""Rate limits and budgets, decided before any LLM call (the gates in ``bot.middlewares.limits``).

Sliding-window counters per member and per group (in memory: a restart forgives, which is fine for a
flood guard) and daily budgets read from the durable usage ledger: tokens per group, tokens per member
across every group (so a member cannot multiply their share by opening groups), and tokens and cost of the
whole bot (so no number of groups or members raises the operator's bill past it). A budget of 0 is none.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
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
    an allowed request at the time ``check_rate`` saw it.

    An answer the budgets allowed holds a reservation of ``reserve_tokens`` (one model call's worth) against
    the bot-wide and the member's budgets until ``release``. Answers run side by side (one per group):
    without reservations every answer in flight when a budget runs out would still be paid; with them a
    budget is overshot by less than one reservation (an answer's first call; its tool rounds, if any, come
    on top), and only answers near the end of a budget wait."""

    def __init__(
        self, limits: LimitSettings, now: Callable[[], datetime], ledger: UsageLedger | None,
        reserve_tokens: int = 0,
    ) -> None:
        self._limits = limits
        self._now = now
        self._ledger = ledger
        self._reserve = reserve_tokens
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._notified: dict[str, float] = {}
        self._held: dict[str, int] = defaultdict(int)  # member key ("" = everyone) -> answers in flight
        self._released = asyncio.Event()  # set (and replaced) whenever an answer in flight ends
        self._checks = 0

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

    def check_rate(
        self, group_key: str, member_key: str, text: str, t: float, member_scope: str | None = None
    ) -> Verdict:
        """Refuse (with a reason) an oversized input or a request past the member's or the group's window.
        The member's window counts within ``member_scope`` (default: the group; a pai spanning groups)."""
        self._sweep(t)
        if len(text) > self._limits.max_input_chars:
            return Verdict(False, "too long", notify=True)
        mkey, gkey = f"m:{member_scope or group_key}:{member_key}", f"g:{group_key}"
        if not self._window_ok(mkey, self._limits.member_per_minute, t):
            return Verdict(False, "member rate", notify=self._once(mkey, t))
        if not self._window_ok(gkey, self._limits.group_per_minute, t):
            return Verdict(False, "group rate", notify=self._once(gkey, t))
        return Verdict(True)

    async def check_budget(self, group_key: str, member_key: str, t: float, accounts: Sequence[str] = ()) -> Verdict:
        """Refuse once a daily budget is spent: the group's, the member's across groups, or the bot's
        (``budget_spent``). ``member_key`` names the person (linked accounts are one), ``accounts`` the
        accounts whose usage is theirs (default: ``member_key`` alone). An allowed answer holds its
        reservation until ``release(member_key)``. When only the answers in flight stand between a budget and
        its limit, this waits for them to end and decides then (never longer than those answers take)."""
        while self._ledger is not None:
            spent = budget_spent(self._limits, self._ledger, group_key, member_key, accounts=accounts)
            if spent == "member budget":
                return Verdict(False, spent, notify=self._once(f"mb:{member_key}", t))
            if spent is not None:
                return Verdict(False, spent, notify=self._once(f"b:{group_key}", t))
            held = Held(self._held.get("", 0) * self._reserve, self._held.get(member_key, 0) * self._reserve)
            if budget_spent(self._limits, self._ledger, group_key, member_key, held, accounts) is None:
                break
            released = self._released
            await released.wait()
        self._held[""] += 1
        self._held[member_key] += 1
        return Verdict(True)

    def release(self, member_key: str) -> None:
        """The answer ``check_budget`` allowed is over (its usage is in the ledger): free its reservation."""
        for key in ("", member_key):
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]
        released, self._released = self._released, asyncio.Event()
        released.set()

    def count(self, group_key: str, member_key: str, t: float, member_scope: str | None = None) -> None:
        self._hits[f"m:{member_scope or group_key}:{member_key}"].append(t)
        self._hits[f"g:{group_key}"].append(t)

    def _sweep(self, t: float) -> None:
        """Forget empty windows and old notices now and then: members and groups come and go."""
        self._checks += 1
        if self._checks % 1000:
            return
        for key in [k for k, q in self._hits.items() if not q or t - q[-1] >= 60.0]:
            del self._hits[key]
        for key in [k for k, last in self._notified.items() if t - last >= 60.0]:
            del self._notified[key]


@dataclass(frozen=True, slots=True)
class Held:
    """Tokens reserved by answers in flight: all of them, and the member's."""

    bot_tokens: int = 0
    member_tokens: int = 0


def budget_spent(
    limits: LimitSettings, ledger: UsageLedger, group_key: str, member_key: str = "", held: Held = Held(),
    accounts: Sequence[str] = (),
) -> str | None:
    """Which daily budget an answer in ``group_key`` to ``member_key`` would exceed, or None: "daily budget"
    (the group's), "member budget" (the member's, across groups and across ``accounts``, the accounts linked
    to the same person; default ``member_key`` alone) or "bot budget" (everything together). ``held`` counts
    as spent already (answers in flight). A budget of 0 is none."""
    if limits.daily_tokens_per_group > 0 and ledger.tokens_today(group_key) >= limits.daily_tokens_per_group:
        return "daily budget"
    member_cap = limits.daily_tokens_per_member
    member_spent = 0
    if member_key and member_cap > 0:
        member_spent = sum(ledger.member_tokens_today(a) for a in (accounts or (member_key,))) + held.member_tokens
    if member_key and member_cap > 0 and member_spent >= member_cap:
        return "member budget"
    if limits.daily_tokens > 0 or limits.daily_cost_usd > 0:
        today = ledger.bot_today()
        tokens = today.prompt_tokens + today.completion_tokens
        if 0 < limits.daily_tokens <= tokens + held.bot_tokens:
            return "bot budget"
        if limits.daily_cost_usd > 0:
            if held.bot_tokens and not tokens:
                return "bot budget"  # no price known yet: one answer at a time until the first is priced
            # tokens in flight are priced at today's average
            cost = today.cost_usd + (today.cost_usd / tokens * held.bot_tokens if tokens else 0.0)
            if limits.daily_cost_usd <= cost:
                return "bot budget"
    return None


REFUSALS = {
    "too long": N_("That message is too long for me to take in. Could you shorten it?"),
    "member rate": N_("You're going a bit fast for me. Give me a minute."),
    "group rate": N_("This group is keeping me very busy. I'll be able to answer again in a minute."),
    "daily budget": N_("This group has used up today's thinking budget. I'll be back tomorrow."),
    "member budget": N_("You have used up your share of my thinking for today. I'll be back for you tomorrow."),
    "bot budget": N_("I have used up today's thinking budget for all my groups. I'll be back tomorrow."),
}
