"""Who is an admin: decided in code from immutable platform ids, never by the model.

Admins are the configured operators (``bot.admins``), the group's configured admins
(``groups.<key>.admins``) and, through the adapter's optional ``AdminChecker`` role, the platform's own
admins of that chat (never in a direct message). A forwarded or edited message is never an admin's: its
text may not be theirs. The model never exercises admin rights (``bot.member`` passes tools
``caller_is_admin=False``): only a command an admin types does.
"""

from __future__ import annotations

import logging

from bot.events import Message
from bot.services import Services

log = logging.getLogger("paibot.admins")


class AdminCheck:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def __call__(self, msg: Message) -> bool:
        if msg.forwarded or msg.edited:
            return False
        key = msg.author.key
        settings = self.s.settings
        if key in settings.bot.admins or key in settings.group(msg.chat.key).admins:
            return True
        # The adapter's optional ``AdminChecker`` role, called on the adapter (not on the Protocol's stub).
        check = getattr(self.s.adapters.get(msg.chat.platform), "is_chat_admin", None)
        if check is not None and not msg.is_direct:
            try:
                return await check(msg.chat, msg.author) is True
            except Exception:  # an adapter failing to answer means "not proven admin"
                log.warning("could not check admin rights of %s in %s", key, msg.chat.key, exc_info=True)
        return False
