"""The first minute: a friendly introduction, and a helping hand with mistyped commands.

    "@Pai hello", "@派 你好", "thanks", "谢谢", "who are you?", "你是谁", "what can you do?", "你能做什么"
        -> who the member is, what it keeps, and three commands to try (with or without a model)
    /sumary  -> "I don't know /sumary. Did you mean /summary? /help lists my commands."
    /foo     -> "I don't know /foo. /help lists my commands."

An observer: it answers before the model is asked, so the first impression never depends on a model being
configured or reachable. The introduction says what is recorded, so it counts as the group's welcome note.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from bot.commands import Command, CommandRegistry, Observation
from bot.i18n import N_
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.policy import parse_command
from bot.ports import Tool
from bot.services import Services

_GREETING = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|heya|hallo|yo|howdy|sup|what'?s up|greetings|good (?:morning|afternoon|evening)"
    r"|morning)(?: there| all| everyone| guys)?|你好|您好|哈喽|哈啰|嗨|嗨嗨|早|早安|早上好|上午好|中午好|下午好|晚上好"
    r"|大家好|在吗|在不在|在么|在嘛)[呀啊哇啦嘛~]*$"
)
_THANKS = re.compile(
    r"^(?:thanks?(?: you| u)?(?: so much| a lot| very much)?|thx|ty|cheers|much appreciated"
    r"|谢谢(?:你|您|啦|了|哈)?|多谢|谢啦|谢了|感谢|感谢感谢|辛苦了|谢谢谢谢)[呀啊哇啦~]*$"
)
_WHO = re.compile(
    r"^(?:who are you|what are you|who r u|introduce yourself|tell me about yourself"
    r"|你是谁|你是什么|你是干什么的|你是做什么的|介绍一下(?:你自己|自己)?|自我介绍一下?)[呀啊呢~]*$"
)
_WHAT = re.compile(
    r"^(?:what can you do|what do you do|what can i ask|how do(?:es)? (?:you|this|it) work|help|help me"
    r"|你能做什么|你会做什么|你会什么|你能干什么|你可以做什么|你有什么功能|有什么功能|怎么用|能干啥|你能干啥|会干啥)[呀啊呢~]*$"
)
_MENTION = re.compile(r"<@[!&]?\d+>|[@＠]\S+")
_SPEAKING_TO_ME = ("mention", "direct message", "reply to me")
_SEEN_COMMAND = ("not addressed", "mention", "direct message", "reply to me", "keyword")

OPENERS = {
    "greeting": N_("👋 Hi, I'm {name}, this group's AI member!"),
    "thanks": N_("😊 You're welcome! I'm {name}, this group's AI member."),
    "who": N_("I'm {name}, this group's AI member."),
    "what": N_("I'm {name}, this group's AI member. Here is what I can do."),
}
# Example commands, in order of preference; the first three the group has are shown.
EXAMPLES = (
    ("summary", N_("/summary yesterday — catch up on what you missed")),
    ("remind", N_("/remind tomorrow 3pm team meeting — a reminder for the group")),
    ("poll", N_("/poll Dinner? | hotpot | BBQ | sushi — a quick vote")),
    ("search", N_("/search venue — what was said about it")),
    ("todo", N_("/todo — the group's to-dos")),
)


def kind_of(prompt: str) -> str | None:
    """"greeting", "thanks", "who", "what" when the whole message is one of those, else None."""
    prompt = _MENTION.sub(" ", prompt)  # a platform mention left in the text ("<@123> hello", "@pai_bot hi")
    kept = "".join(ch for ch in prompt.casefold() if ch == "'" or not unicodedata.category(ch).startswith(("P", "S")))
    text = " ".join(kept.split())
    for kind, pattern in (("greeting", _GREETING), ("thanks", _THANKS), ("who", _WHO), ("what", _WHAT)):
        if pattern.match(text):
            return kind
    return None


class IntroSkill:
    def __init__(self, services: Services, registry: CommandRegistry) -> None:
        self.s = services
        self.registry = registry

    def commands(self) -> Iterable[Command]:
        return []

    def tools(self) -> Iterable[Tool]:
        return []

    def observers(self) -> list[Any]:
        return [self._observe]

    async def _observe(self, obs: Observation) -> str | None:
        decision: Any = obs.decision
        if decision.command:
            return None
        if decision.reason in _SEEN_COMMAND and self.s.settings.triggers.commands:
            unknown = self._unknown_command(obs.message.text)
            if unknown is not None and unknown[1] == "start":  # the first thing Telegram sends in a chat
                return await self.introduction(obs.message.chat.key)
            if unknown is not None:
                return await self._did_you_mean(obs, *unknown)
        if decision.speak and decision.reason in _SPEAKING_TO_ME:
            kind = kind_of(decision.prompt)
            if kind is not None:
                return await self.introduction(obs.message.chat.key, kind)
        return None

    async def introduction(self, group_key: str, kind: str = "greeting") -> str:
        t = await self.s.translator(group_key)
        name = self.s.name_shown(group_key, t)
        lines = [t._(OPENERS[kind], name=name), t._(
            "I remember what is said here (this group only), so I can answer with the group's context: "
            "mention me (@{name}) or reply to me. Try:", name=name)]
        available = [text for command, text in EXAMPLES if self.registry.get(command) is not None][:3]
        lines += [f"• {t._(text)}" for text in available]
        lines.append(t._("/help lists everything. /what-do-you-know-about-me shows what I keep about you; "
                         "/optout and /forget-me are yours."))
        if self.s.brain is None:
            lines.append(t._("(No language model is set up yet, so I answer by quoting the group's memory.)"))
        await self.s.state.group_set(group_key, "welcomed", "1")  # this says all the welcome note would
        return "\n".join(lines)

    def _unknown_command(self, text: str) -> tuple[str, str] | None:
        """(prefix, name) of a command nobody here knows and that is not meant for another bot."""
        prefixes = self.s.settings.triggers.command_prefixes
        parsed = parse_command(text, prefixes)
        if parsed is None:
            return None
        name, target, _ = parsed
        ours = {self.s.settings.bot.name.lower(), *(a.lower() for a in self.s.settings.bot.aliases)}
        if self.registry.get(name) is not None or (target and target.lower() not in ours):
            return None
        prefix = next(p for p in prefixes if p and text.lstrip().startswith(p))
        return prefix, name

    async def _did_you_mean(self, obs: Observation, prefix: str, name: str) -> str:
        t = await self.s.translator(obs.message.chat.key)
        shown = f"{prefix}{name.replace('_', '-')}"
        known = sorted(self.registry.names())
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            command = self.registry.get(close[0])
            assert command is not None
            guess = f"{prefix}{command.name.replace('_', '-')}"
            return t._("I don't know {command}. Did you mean {guess}? /help lists my commands.",
                       command=shown, guess=guess)
        return t._("I don't know {command}. /help lists my commands.", command=shown)


def build(env: SkillEnv) -> SkillSet:
    return SkillSet([IntroSkill(env.services, env.registry)])


plugin = SkillPlugin(
    name="intro",
    build=build,
    order=0,
    description="a friendly introduction for greetings, thanks and mistyped commands",
)
