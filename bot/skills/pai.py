"""Pais made from chat (``bot.pais``): groups on any platform join one conversation.

    /pai                     which pai this group is in, its groups (and, for admins, its invite code)
    /pai create <name>       (a group admin) a new pai of this group: a 派号 and an invite code
    /pai join <code>         (an admin of another group, any platform) ask to join; the owner is asked
    /pai accept <n>          (the pai's owner, from any of their linked accounts) let request n in
    /pai reject <n>          ... or not
    /pai leave               (a group admin) leave; when the owner's group leaves, the pai ends

Joining is announced in every group of the pai (what is said there is passed on from then on); notices to
other groups go through the relay's queue, so a platform that is down gets them once it is back. Admin
rights come from the platform's roles or the configuration (``CommandCall.is_admin``), never from the
model: there are no tools here.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.commands import Command, CommandCall
from bot.events import Message
from bot.i18n import N_, Translator
from bot.pais import Pai, PaiError
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool
from bot.services import Services

MAX_NAME = 40

REASONS = {
    "in a pai": N_("This group is already in the pai 「{name}」; an admin leaves it first with /pai leave."),
    "from config": N_("This group's pai is set in the bot's configuration; only the operator can change it."),
    "unknown invite": N_("There is no pai with that invite code. Check the code with the pai's owner."),
    "already a member": N_("This group is already in 「{name}」."),
    "no request": N_("There is no open request with that number (see /pai)."),
    "not in a pai": N_("This group is not in a pai."),
    "busy": N_("I could not make a pai just now; please try again."),
}


class PaiSkill:
    def __init__(self, services: Services) -> None:
        self.s = services

    def commands(self) -> Iterable[Command]:
        return [Command("pai", N_("Join this group with groups on other platforms into one conversation"),
                        self._cmd, usage=N_("/pai [create <name> | join <code> | accept <n> | reject <n> | leave]"))]

    def tools(self) -> Iterable[Tool]:
        return []  # joining groups is an admin's own act, never the model's

    async def _cmd(self, call: CommandCall) -> str:
        t = await self.s.translator(call.message.chat.key)
        verb, _, rest = call.args.strip().partition(" ")
        verb, rest = verb.lower(), rest.strip()
        if call.message.is_direct and verb not in ("accept", "reject"):
            return t._("A pai joins groups: use /pai in a group.")
        try:
            if verb in ("", "show", "list"):
                return await self._show(call, t)
            if verb in ("accept", "reject"):
                return await self._answer(call, t, rest, accept=verb == "accept")
            if not call.is_admin:
                return t._("Only admins of this group can use /pai {verb}.", verb=verb)
            if verb == "create":
                return await self._create(call, t, rest)
            if verb == "join":
                return await self._join(call, t, rest)
            if verb == "leave":
                return await self._leave(call, t)
        except PaiError as exc:
            name = exc.pai.name if exc.pai is not None else ""
            return t._(REASONS[exc.reason], name=name)
        return t._("Usage: /pai [create <name> | join <code> | accept <n> | reject <n> | leave]")

    # ----------------------------------------------------------------- the commands

    async def _show(self, call: CommandCall, t: Translator) -> str:
        pai = self.s.pais.pai_for(call.message.chat.key)
        if pai is None:
            return t._("This group is not in a pai. An admin makes one with /pai create <name>, or joins one "
                       "with /pai join <code> (the code comes from the pai's owner).")
        lines = [t._("This group is in the pai 「{name}」 (派号 {number}):", name=pai.name, number=pai.number)
                 if pai.number else t._("This group is in the pai 「{name}」:", name=pai.name)]
        for key in pai.chats:
            owner = t._(" (owner)") if key == pai.owner_chat else ""
            lines.append(f"• {self._group(key, t=t)}{owner}")
        if not pai.relay:
            lines.append(t._("Its groups share one memory; messages are not passed on between them."))
        if call.is_admin and pai.invite:
            lines.append(t._("Invite code: {code} (an admin of another group says /pai join {code} there).",
                             code=pai.invite))
        if pai.number and self._owns(call.message, pai):
            for req in await self.s.pais.requests(pai.number):
                lines.append(t._("Request {no}: {group} asks to join (/pai accept {no} or /pai reject {no}).",
                                 no=req.no, group=self._group(req.chat_key, req.chat_title, t)))
        return "\n".join(lines)

    async def _create(self, call: CommandCall, t: Translator, name: str) -> str:
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            return t._("Give the pai a name of 1 to {n} characters: /pai create <name>", n=MAX_NAME)
        msg = call.message
        pai = await self.s.pais.create(name, msg.chat, msg.author)
        return t._("Made the pai 「{name}」: 派号 {number}, invite code {code}. An admin of another group, on any "
                   "platform, says /pai join {code} there; you confirm each group. From then on what is said "
                   "in one group is passed on to the others, with the speaker's name and platform.",
                   name=pai.name, number=pai.number, code=pai.invite)

    async def _join(self, call: CommandCall, t: Translator, code: str) -> str:
        if not code:
            return t._("Usage: /pai join <invite code>")
        msg = call.message
        pai, req = await self.s.pais.request_join(code, msg.chat, msg.author)
        owner_t = await self.s.translator(pai.owner_chat)
        await self._notify(pai.owner_chat, owner_t._(
            "{group} asks to join the pai 「{name}」 (request {no}). Its owner answers with /pai accept {no} or "
            "/pai reject {no}.", group=self._group(msg.chat.key, msg.chat.title, owner_t), name=pai.name, no=req.no),
            f"request:{req.no}")
        return t._("Asked to join the pai 「{name}」 (派号 {number}). I'll say here when its owner answers.",
                   name=pai.name, number=pai.number)

    async def _answer(self, call: CommandCall, t: Translator, arg: str, *, accept: bool) -> str:
        if not arg.isdigit():
            return t._("Usage: /pai accept <n> or /pai reject <n> (the request's number, see /pai)")
        req = await self.s.pais.request(int(arg))
        pai = self.s.pais.by_number(req.number) if req is not None else None
        if req is None or pai is None:
            raise PaiError("no request")
        if not self._owns(call.message, pai):
            return t._("Only the owner of 「{name}」 answers its requests.", name=pai.name)
        await self.s.pais.answer(req.no, accept=accept)
        group = self._group(req.chat_key, req.chat_title, t)
        if not accept:
            joiner_t = await self.s.translator(req.chat_key)
            await self._notify(req.chat_key, joiner_t._("The owner of 「{name}」 declined this group's request.",
                                                        name=pai.name), f"answer:{req.no}")
            return t._("Declined: {group} does not join 「{name}」.", group=group, name=pai.name)
        joined = self.s.pais.by_number(req.number) or pai
        for key in joined.chats:
            if key == call.message.chat.key:
                continue
            kt = await self.s.translator(key)
            await self._notify(key, kt._(
                "{group} has joined the pai 「{name}」. What is said in any of its groups ({groups}) is passed on "
                "to the others from now on, with the speaker's name and platform; /pai shows them.",
                group=self._group(req.chat_key, req.chat_title, kt), name=joined.name,
                groups=self._groups(joined, kt)), f"joined:{req.no}")
        return t._("{group} has joined the pai 「{name}」 ({groups}).", group=group, name=joined.name,
                   groups=self._groups(joined, t))

    async def _leave(self, call: CommandCall, t: Translator) -> str:
        key = call.message.chat.key
        pai, ended = await self.s.pais.leave(key)
        stamp = f"{pai.number}:{self.s.clock.now().isoformat()}"
        for other in pai.chats:
            if other == key:
                continue
            ot = await self.s.translator(other)
            if ended:
                text = ot._("The pai 「{name}」 has ended: its owner's group left. Messages are no longer passed on.",
                            name=pai.name)
            else:
                text = ot._("{group} has left the pai 「{name}」.", group=self._group(key, call.message.chat.title, ot),
                            name=pai.name)
            await self._notify(other, text, f"left:{key}:{stamp}")
        if ended:
            return t._("The pai 「{name}」 has ended (this group made it). Messages are no longer passed on.",
                       name=pai.name)
        return t._("This group has left the pai 「{name}」: messages are no longer passed on.", name=pai.name)

    # ----------------------------------------------------------------- helpers

    def _owns(self, msg: Message, pai: Pai) -> bool:
        people = self.s.people
        return bool(pai.owner) and people.person_of(msg.author.key) == people.person_of(pai.owner)

    def _group(self, key: str, title: str = "", t: Translator | None = None) -> str:
        """``Family (TG)``, the platform's label in the reader's language."""
        platform = self.s.pais.platform_label(key.split(":", 1)[0], t)
        title = title or self.s.pais.title(key) or key.split(":", 1)[1]
        return f"{title} ({platform})"

    def _groups(self, pai: Pai, t: Translator) -> str:
        return t.commas([self._group(k, t=t) for k in pai.chats])

    async def _notify(self, chat_key: str, text: str, key: str) -> None:
        if self.s.relay is not None:
            await self.s.relay.notify(chat_key, text, key)


def build(env: SkillEnv) -> SkillSet:
    return SkillSet([PaiSkill(env.services)])


plugin = SkillPlugin(
    name="pai",
    build=build,
    order=85,
    description="/pai: groups on several platforms in one conversation",
)
