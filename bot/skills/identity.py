"""Members link their own accounts on several platforms (``bot.people``).

    /link            a one-time code, sent privately (whoever holds it could link an account to yours)
    /link <code>     from your account on another platform: the two are one person from now on
    /unlink          this account is on its own again
    /signin          a one-time link, sent privately, that opens the pai's web group signed in as you: the
                     web group is one more room of the pai (opened for a pai made from chat the first time)

A linked person is one person for /forget-me and /what-do-you-know-about-me (``bot.skills.privacy``), for
rate limits, and in the prompt, where both accounts appear. Nothing else changes: each group still sees only
what was said in it (or its pai).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from bot.commands import Command, CommandCall
from bot.errors import DeliveryError
from bot.events import ChatRef, PersonRef
from bot.i18n import N_, Translator
from bot.people import CODE_TTL, LinkError
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool
from bot.services import Services

SIGN_IN_TTL_S = 15 * 60

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
            Command("signin", N_("Open this pai's web group as yourself (a sign-in link, sent privately)"), self._signin),
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

    async def _signin(self, call: CommandCall) -> str:
        msg = call.message
        t = await self.s.translator(msg.chat.key)
        host = self._host()
        if host is None:
            return t._("There is no web group here: the bot's web group is not enabled.")
        platform, hosted = host
        if msg.chat.platform == platform:
            return t._("You are in the web group already.")
        room = await self._room(msg.chat.key, platform, hosted)
        if isinstance(room, str):
            return t._(room)
        me = await self._web_identity(msg.author, platform)
        url = await hosted.sign_in_link(room, me, SIGN_IN_TTL_S)
        text = t._("Your sign-in link to the web group (it works once, for {minutes} minutes; keep it to "
                   "yourself): {url}", minutes=int(SIGN_IN_TTL_S // 60), url=url)
        if msg.is_direct:
            return text
        send = getattr(self.s.adapters.get(msg.chat.platform), "send_direct", None)
        if send is None:
            return t._("I can't write to you privately on this platform, and the link must stay private.")
        try:
            await send(msg.author, text)
        except DeliveryError:
            return t._("I can't write to you privately yet. Open a private chat with me, then send /signin again.")
        return t._("I sent you a sign-in link to the web group in a private message.")

    def _host(self) -> tuple[str, Any] | None:
        """The connected adapter that hosts rooms (``bot.ports.HostedRooms``), with its platform."""
        for platform, adapter in self.s.adapters.items():
            if callable(getattr(adapter, "open_room", None)) and callable(getattr(adapter, "sign_in_link", None)):
                return platform, adapter
        return None

    async def _room(self, chat_key: str, platform: str, hosted: Any) -> ChatRef | str:
        """The pai's room on the hosting platform (opened the first time for a pai made from chat), or why
        there is none (a sentence to translate)."""
        pai = self.s.pais.pai_for(chat_key)
        if pai is None:
            return N_("This group is not in a pai; the web group joins a pai (see /pai).")
        for key in pai.chats:
            if key.split(":", 1)[0] == platform:
                return ChatRef(platform, key.split(":", 1)[1], self.s.pais.title(key))
        if pai.from_config:
            return N_("This pai has no web group; the operator adds one to it in the configuration.")
        room = await hosted.open_room(pai.name)
        await self.s.pais.add_room(pai.number, room)
        return room

    async def _web_identity(self, who: PersonRef, platform: str) -> PersonRef:
        """The member's identity on the hosting platform: the one linked to them, else a new one, linked."""
        for identity in self.s.people.identities(who.key):
            if identity.split(":", 1)[0] == platform:
                return PersonRef(platform, identity.split(":", 1)[1], who.display_name)
        mine = PersonRef(platform, "m" + secrets.token_hex(8), who.display_name)
        await self.s.people.attach(who, mine)
        return mine

    async def _unlink(self, call: CommandCall) -> str:
        t = await self.s.translator(call.message.chat.key)
        if await self.s.people.unlink(call.message.author.key):
            return t._("This account is no longer linked to your other accounts.")
        return t._("This account is not linked to any other.")

    def _accounts(self, identity: str, t: Translator) -> str:
        ids = self.s.people.identities(identity)
        if len(ids) < 2:
            return ""
        return t.join([self.account(i, t) for i in ids])

    def account(self, identity: str, t: Translator | None = None) -> str:
        platform = identity.split(":", 1)[0]
        name = self.s.people.name_of(identity) or identity.split(":", 1)[1]
        return f"{name} ({self.s.pais.platform_label(platform, t)})"


def build(env: SkillEnv) -> SkillSet:
    return SkillSet([IdentitySkill(env.services)])


plugin = SkillPlugin(
    name="identity",
    build=build,
    order=86,
    description="/link, /unlink and /signin: one person across platforms",
)
