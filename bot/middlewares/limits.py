"""Rate limits and the daily budget as gates: a refused turn is not answered (observers may still ingest
the message, without spending model calls), and the member is told why once per window.

``RateLimits`` refuses an oversized input or a member or group past its window, and counts the request
when no gate refused it; ``DailyBudget`` refuses once the group's daily token budget is spent. Both look
only at turns where the member would speak."""

from __future__ import annotations

from bot.limits import RateLimiter, Verdict
from bot.middleware import Handler, Refusal, Turn


def _refusal(verdict: Verdict) -> Refusal:
    return Refusal(verdict.reason, verdict.notify)


class RateLimits:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def __call__(self, turn: Turn, call_next: Handler[Turn]) -> None:
        if not turn.decision.speak or turn.refusal is not None:
            await call_next(turn)
            return
        msg = turn.message
        # A quoted message is input too (a fact check sends it whole): it counts towards the size limit.
        quoted = msg.reply_to.text if msg.reply_to is not None else ""
        t = self._limiter.now()
        verdict = self._limiter.check_rate(msg.chat.key, msg.author.key, msg.text + quoted, t)
        if not verdict.allowed:
            turn.refusal = _refusal(verdict)
            await call_next(turn)
            return
        try:
            await call_next(turn)
        finally:
            if turn.refusal is None:  # an inner gate (the budget) may still have refused it
                self._limiter.count(msg.chat.key, msg.author.key, t)


class DailyBudget:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def __call__(self, turn: Turn, call_next: Handler[Turn]) -> None:
        if turn.decision.speak and turn.refusal is None:
            verdict = self._limiter.check_budget(turn.message.chat.key, self._limiter.now())
            if not verdict.allowed:
                turn.refusal = _refusal(verdict)
        await call_next(turn)
