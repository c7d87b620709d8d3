"""Quiet hours: during a group's quiet hours (``/settings quiet_hours 23:00-07:00``, in its local time) the
member answers only when addressed. An answer a keyword would have triggered waits; mentions, replies to the
bot, commands and direct messages are answered as ever (reminders and poll results go out too)."""

from __future__ import annotations

from bot.middleware import Handler, Turn
from bot.policy import Decision
from bot.services import Services


class QuietHours:
    def __init__(self, services: Services) -> None:
        self._s = services

    async def __call__(self, turn: Turn, call_next: Handler[Turn]) -> None:
        d = turn.decision
        if d.speak and d.reason == "keyword" and self._s.quiet_now(turn.message.chat.key):
            turn.decision = Decision(False, "quiet hours")
        await call_next(turn)
