"""The member's cross-cutting policies, one middleware each (see ``bot.middleware`` for the chains).

    gates      QuietHours -> RateLimits -> DailyBudget      (bot.middlewares.quiet_hours, .limits)
    answering  Typing                                       (bot.middlewares.typing)
    replies    Welcome                                      (bot.middlewares.welcome)

``default_chains`` is what the composition root gives the member.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.limits import RateLimiter
from bot.middleware import Middleware, ReplyDraft, Turn
from bot.middlewares.limits import DailyBudget, RateLimits
from bot.middlewares.quiet_hours import QuietHours
from bot.middlewares.typing import Typing
from bot.middlewares.welcome import Welcome
from bot.services import Services


@dataclass(frozen=True)
class Chains:
    """The member's three chains (see ``bot.middleware``), outermost middleware first."""

    gates: tuple[Middleware[Turn], ...] = ()
    answering: tuple[Middleware[Turn], ...] = ()
    replies: tuple[Middleware[ReplyDraft], ...] = ()


def default_chains(services: Services, limiter: RateLimiter) -> Chains:
    return Chains(
        gates=(QuietHours(services), RateLimits(limiter, services.people.person_of), DailyBudget(limiter, services.people.person_of, services.people.identities)),
        answering=(Typing(services.adapters),),
        replies=(Welcome(services),),
    )


__all__ = ["Chains", "DailyBudget", "QuietHours", "RateLimits", "Typing", "Welcome", "default_chains"]
