"""Group admins on platforms whose chats keep their admins themselves (the web group).

    /admin add <name>    make the member called <name> an admin of this group (admins only)

Who may do it is decided like every admin right (``bot.admins``: configured operators, the group's
configured admins, the platform's admins; in a web group its creator and whom its admins named). The
platform keeps the list (``bot.ports.AdminGranter``); elsewhere admins come from the platform's roles and
config.yaml, and the command says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.commands import Command, CommandCall
from bot.i18n import N_
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool
from bot.services import Services

GRANTED = {
    "granted": N_("{name} is now an admin of this group."),
    "already": N_("{name} is already an admin of this group."),
    "unknown": N_("Nobody called {name} has written in this group yet."),
    "ambiguous": N_("Several members of this group are called {name}; ask one of them to pick another nickname first."),
}


class AdminSkill:
    def __init__(self, services: Services) -> None:
        self.s = services

    def commands(self) -> Iterable[Command]:
        return [Command("admin", N_("Make a member an admin of this group"), self._admin,
                        usage="/admin add <nickname>", admin_only=True)]  # fmt: skip

    def tools(self) -> Iterable[Tool]:
        return []  # admin rights are given by an admin's own command, never through the model

    async def _admin(self, call: CommandCall) -> str:
        msg = call.message
        t = await self.s.translator(msg.chat.key)
        m = re.match(r"^add\s+@?(.+)$", call.args.strip(), re.IGNORECASE)
        if not m:
            return t._("Usage: /admin add <nickname>")
        grant = getattr(self.s.adapters.get(msg.chat.platform), "grant_admin", None)
        if grant is None:
            return t._("Here admins are the platform's admins and those listed in config.yaml.")
        result = await grant(msg.chat, " ".join(m.group(1).split()))
        return t._(GRANTED[result.status], name=result.name)


def build(env: SkillEnv) -> SkillSet:
    return SkillSet([AdminSkill(env.services)])


plugin = SkillPlugin(
    name="admins",
    build=build,
    order=75,
    description="/admin add: group admins where the platform keeps them (the web group)",
)
