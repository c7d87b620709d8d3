"""Group admins on platforms whose chats keep their admins themselves (the web group).

    /admin add <name>    make the member called <name> an admin of this group (admins only)

Who may do it is decided like every admin right (``Member.is_admin``: configured operators, the group's
configured admins, the platform's admins; in a web group its creator and whom its admins named). The
platform keeps the list (``bot.ports.AdminGranter``); elsewhere admins come from the platform's roles and
config.yaml, and the command says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bot.commands import Command, CommandCall, CommandRegistry
from bot.ports import Tool
from bot.services import Services
from bot.skills.bilingual import pick

SAY = {
    "usage": ("Usage: /admin add <nickname>", "用法：/admin add <昵称>"),
    "granted": ("{name} is now an admin of this group.", "{name} 现在是本群的管理员了。"),
    "already": ("{name} is already an admin of this group.", "{name} 已经是本群的管理员。"),
    "unknown": (
        "Nobody called {name} has written in this group yet.",
        "本群还没有叫 {name} 的成员发过言。",
    ),
    "ambiguous": (
        "Several members of this group are called {name}; ask one of them to pick another nickname first.",
        "本群有好几位成员都叫 {name}，请先让其中一位换个昵称。",
    ),
    "elsewhere": (
        "Here admins are the platform's admins and those listed in config.yaml.",
        "在这里，管理员由平台的管理员和 config.yaml 中列出的人担任。",
    ),
}


class AdminSkill:
    def __init__(self, services: Services) -> None:
        self.s = services

    def commands(self) -> Iterable[Command]:
        return [Command("admin", "Make a member an admin of this group", self._admin, usage="/admin add <nickname>",
                        admin_only=True)]  # fmt: skip

    def tools(self) -> Iterable[Tool]:
        return []  # admin rights are given by an admin's own command, never through the model

    async def _admin(self, call: CommandCall) -> str:
        msg = call.message
        m = re.match(r"^add\s+@?(.+)$", call.args.strip(), re.IGNORECASE)
        if not m:
            return pick(self.s, msg, SAY["usage"])
        grant = getattr(self.s.adapters.get(msg.chat.platform), "grant_admin", None)
        if grant is None:
            return pick(self.s, msg, SAY["elsewhere"])
        result = await grant(msg.chat, " ".join(m.group(1).split()))
        return pick(self.s, msg, SAY[result.status], name=result.name)


def build(services: Services, registry: CommandRegistry) -> tuple[list[Any], list[Any]]:
    return [AdminSkill(services)], []
