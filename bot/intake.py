"""The intake policy: which inbound events the inbox may keep, decided before anything is written.

The inbox is a queue, not an archive, and what policy refuses must never reach the disk. ``IntakePolicy``
runs inside the inbox's submit transaction (``bot.state.StateDB``), so an event is either admitted whole or
leaves only its id (for deduplication: a platform delivering it again is still recognised):

* groups that are not served (``access.allowed_groups``, ``groups.<key>.enabled: false``) and direct
  messages from people who may not use the bot (blocked, not on ``access.allowed_users``): refused;
* a member who opted out of recording in a group (``/optout``): her messages are refused unless they may
  need an answer (a command, a mention, a reply to the bot, a keyword): those are queued so the bot can
  answer, never recorded, and their payload goes once they are handled like every other event's.

Pure decisions over the settings and a few per-group flags (``GroupFlags``, read in the same transaction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

from bot.config import Settings
from bot.events import ChatRef, Message
from bot.policy import Facts, decide, may_record


class GroupFlags(Protocol):
    """Per-group key/values of the core's state (``group_kv``): ``optout:<user id>``, ``own:<message id>``,
    ``setting:<name>``."""

    def get(self, group_key: str, key: str) -> str | None: ...


def opted_out(flags: GroupFlags, chat_key: str, user_id: str) -> bool:
    """Whether the member asked not to be recorded in this group (``/optin`` deletes the flag)."""
    return bool(flags.get(chat_key, f"optout:{user_id}"))


class IntakePolicy:
    """Admits or refuses inbound events (see the module docstring). ``commands`` gives the command names the
    bot knows (the registry fills up after the inbox exists, so it is asked at each decision)."""

    def __init__(self, settings: Settings, commands: Callable[[], frozenset[str]] = frozenset) -> None:
        self.settings = settings
        self._commands = commands

    def serves(self, chat: ChatRef) -> bool:
        """Whether messages of this group are taken at all (a platform that stores messages itself, such as
        the web group, refuses to store posts to a group the bot does not serve)."""
        if not self.settings.group(chat.key).enabled:
            return False
        allowed = self.settings.access.allowed_groups
        return not allowed or chat.key in allowed

    def admit(self, msg: Message, flags: GroupFlags) -> bool:
        if not may_record(msg, self.settings):
            return False
        if msg.from_me or not opted_out(flags, msg.chat.key, msg.author.user_id):
            return True
        return self._may_need_an_answer(msg, flags)

    def _may_need_an_answer(self, msg: Message, flags: GroupFlags) -> bool:
        key = msg.chat.key
        settings = self.settings
        renamed = flags.get(key, "setting:name")
        if renamed:  # the bot's name in this group, set with /settings, is a trigger too
            group = dataclasses.replace(settings.group(key), name=renamed)
            settings = dataclasses.replace(settings, groups={**settings.groups, key: group})
        reply_to_me = msg.reply_to is not None and flags.get(key, f"own:{msg.reply_to.message_id}") is not None
        return decide(msg, settings, Facts(reply_to_me, self._commands(), 0.0)).speak

