"""Members link their own accounts on several platforms (``bot.people``).

    /link            a one-time code, sent privately (whoever holds it could link an account to yours)
    /link <code>     from your account on another platform: the two are one person from now on
    /unlink          this account is on its own again

A linked person is one person for /forget-me and /what-do-you-know-about-me (``bot.skills.privacy``), for
rate limits, and in the prompt, where both accounts appear. Nothing else changes: each group still sees only
what was said in it (or its pai).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.commands import Command, CommandCall, CommandRegistry
from bot.errors import DeliveryError
from bot.i18n import N_, Translator
from bot.people import CODE_TTL, LinkError
from bot.ports import Tool
from bot.services import Services
from bot.skills import builtin

REFUSALS = {
    "unknown": N_("That code is wrong, used or expired. /link gives a new one."),
    "same account": N_("That code is from this same account: send /link <code> from your account on the other "
                       "platform."),
    "too many tries": N_("Too many wrong codes from this account; try again in an hour."),
}


class IdentitySkill:
    def __init__(self, services: Services) -> None:
        self.s = services

    def commands(self) -> Iterable[Command]:
        return [
            Command("link", N_("Link your accounts on several platforms (you stay one person for me)"), self._link,
                    usage=N_("/link [code]")),
            Command("unlink", N_("Unlink this account from your other accounts"), self._unlink),
        ]

    def tools(self) -> Iterable[Tool]:
        return []  # only the member, by command, links their accounts

    async def _link(self, call: CommandCall) -> str:
        t = await self.s.translator(call.message.chat.key)
        code = "".join(call.args.split())
        if code:
            return await self._redeem(call, t, code)
        msg = call.message
        issued = await self.s.people.issue(msg.author)
        minutes = int(CODE_TTL.total_seconds() // 60)
        private = t._(
            "Your link code: {code}. It works once, for {minutes} minutes. From your account on another platform, "
            "send me /link {code} (in a group or privately): the two accounts are then one person for me.",
            code=issued, minutes=minutes)
        linked = self._accounts(msg.author.key, t)
        if linked:
            private += "\n" + t._("Linked now: {accounts}.", accounts=linked)
        if msg.is_direct:
            return private
        send = getattr(self.s.adapters.get(msg.chat.platform), "send_direct", None)
        if send is None:
            return t._("I can't write to you privately on this platform. Send me /link in a private message.")
        try:
            await send(msg.author, private)
        except DeliveryError:
            return t._("I can't write to you privately yet. Send me /link in a private message (open a chat "
                       "with me first).")
        return t._("I sent you a link code in a private message.")

    async def _redeem(self, call: CommandCall, t: Translator, code: str) -> str:
        try:
            await self.s.people.redeem(code, call.message.author)
        except LinkError as exc:
            return t._(REFUSALS[exc.reason])
        return t._("Linked: {accounts} are one person for me now. /unlink undoes it.",
                   accounts=self._accounts(call.message.author.key, t))

    async def _unlink(self, call: CommandCall) -> str:
        t = await self.s.translator(call.message.chat.key)
        if await self.s.people.unlink(call.message.author.key):
            return t._("This account is no longer linked to your other accounts.")
        return t._("This account is not linked to any other.")

    def _accounts(self, identity: str, t: Translator) -> str:
        ids = self.s.people.identities(identity)
        if len(ids) < 2:
            return ""
        return t.join([self.account(i) for i in ids])

    def account(self, identity: str) -> str:
        platform = identity.split(":", 1)[0]
        name = self.s.people.name_of(identity) or identity.split(":", 1)[1]
        return f"{name} ({self.s.pais.platform_label(platform)})"


def build(services: Services, registry: CommandRegistry) -> tuple[list[Any], list[Any]]:
    return [IdentitySkill(services)], []


plugin = builtin("identity", build, 86, "/link and /unlink: one person across platforms")
