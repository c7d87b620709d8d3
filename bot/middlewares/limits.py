"""Rate limits and the daily budget as gates: a refused turn is not answered (observers may still ingest
the message, without spending model calls), and the member is told why once per window.

``RateLimits`` refuses an oversized input or a member or group past its window, and counts the request
when no gate refused it; ``DailyBudget`` refuses once a daily budget is spent (the group's, the member's
across groups, the bot's) and holds the answer's reservation against them while it runs. Both look only at
turns where the member would speak."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.limits import RateLimiter, Verdict
from bot.middleware import Handler, Refusal, Turn


def _refusal(verdict: Verdict) -> Refusal:
    return Refusal(verdict.reason, verdict.notify)


class RateLimits:
    """``person_of`` names the person behind an account (``bot.people``: linked accounts are one person); a
    member's window counts across the turn's pai."""

    def __init__(self, limiter: RateLimiter, person_of: Callable[[str], str] = lambda key: key) -> None:
        self._limiter = limiter
        self._person_of = person_of

    async def __call__(self, turn: Turn, call_next: Handler[Turn]) -> None:
        if not turn.decision.speak or turn.refusal is not None:
            await call_next(turn)
            return
        msg = turn.message
        # A quoted message is input too (a fact check sends it whole): it counts towards the size limit.
        quoted = msg.reply_to.text if msg.reply_to is not None else ""
        t = self._limiter.now()
        person = self._person_of(msg.author.key)
        verdict = self._limiter.check_rate(msg.chat.key, person, msg.text + quoted, t, member_scope=turn.pai)
        if not verdict.allowed:
            turn.refusal = _refusal(verdict)
            await call_next(turn)
            return
        try:
            await call_next(turn)
        finally:
            if turn.refusal is None:  # an inner gate (the budget) may still have refused it
                self._limiter.count(msg.chat.key, person, t, member_scope=turn.pai)


class DailyBudget:
    """The daily budgets: the group's, the member's across groups, the whole bot's (``bot.limits``). An
    answer it lets through holds its reservation against them until everything inside has run. A person's
    linked accounts (``bot.people``: ``person_of``, ``identities``) share one member budget."""

    def __init__(
        self,
        limiter: RateLimiter,
        person_of: Callable[[str], str] = lambda key: key,
        identities: Callable[[str], Sequence[str]] = lambda key: (key,),
    ) -> None:
        self._limiter = limiter
        self._person_of = person_of
        self._identities = identities

    async def __call__(self, turn: Turn, call_next: Handler[Turn]) -> None:
        if not turn.decision.speak or turn.refusal is not None:
            await call_next(turn)
            return
        account = turn.message.author.key
        member = self._person_of(account)
        verdict = await self._limiter.check_budget(
            turn.message.chat.key, member, self._limiter.now(), accounts=self._identities(account)
        )
        if not verdict.allowed:
            turn.refusal = _refusal(verdict)
            await call_next(turn)
            return
        try:
            await call_next(turn)
        finally:
            self._limiter.release(member)  # its usage is in the ledger now
