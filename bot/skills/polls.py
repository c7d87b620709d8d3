"""Polls and random picks: ``/poll``, ``/pick`` and the ``open_poll`` tool.

    /poll Where do we eat? | Luigi's | Sushi Go | Taco Town for 30m
    /poll close 2            (the opener or a group admin closes poll #2 early)
    /pick pizza sushi tacos  (or "pizza, sushi, tacos")

"@Pai help us pick a restaurant" lets the model gather the options from the thread and call ``open_poll``.
Where the platform has native polls (``capabilities.polls``) the poll goes out as one (``Outgoing.poll``);
elsewhere it is a numbered text poll. Members vote by replying to the poll message with the option number
(or its text); one vote per member id, the last one counts. Native polls accept the same reply votes: the
adapters do not yet report native poll answers to the core, so replies are the one counted channel.
At the deadline a background loop closes the poll exactly once, announces the result (a tie is broken with
``services.rng`` and said so) and records it as a decision in the group's register.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.commands import HANDLED, Command, CommandCall, Observation, Reply
from bot.events import Message, Outgoing, Poll, SentRef
from bot.i18n import N_, Translator
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool, ToolContext, ToolSpec
from bot.services import Services
from bot.skills.duejobs import DueLoop
from bot.skills.poll_store import PollRow, PollStore
from bot.skills.register import Register
from bot.skills.reminders import fmt_when
from bot.skills.skilldb import SkillDB
from bot.skills.timeparse import parse_when, zh_numerals_to_digits

log = logging.getLogger("paibot.skills.polls")

DEFAULT_MINUTES = 60
MAX_MINUTES = 7 * 24 * 60
MAX_OPTIONS = 10
USAGE = N_("Usage: /poll Question? | option a | option b [| ...] [for 30m]")
_FOR = re.compile(r"\s+(?:for|in)\s+(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?)\s*$", re.I)
# "1分钟", "半小时", "两小时", "1天" (optionally "内"/"后截止") closing the last option
_FOR_ZH = re.compile(r"\s*(?:投票)?(?:时长|持续)?\s*(\d+|半)\s*(分钟|分|个?小时|个?钟头|天)(?:内|后截止|后结束)?\s*$")
# "今晚8点截止", "明天中午前", "截止到周五", "until 8pm", "closes 8pm", "by 8pm"
_DEADLINE = re.compile(
    r"(?:\s+|^)(?:until|till|closes?|closing|by)\s+(?P<en>.+)$|(?P<zh>\S*?(?:截止|之前|以前|前|为止|结束))\s*$"
    r"|(?:截止到|截至|截止)(?P<zh2>\S+)\s*$",
    re.I,
)


def split_closing(text: str, now: datetime, tz: ZoneInfo) -> tuple[str, int | None]:
    """Split a poll's closing time off the end of its last option: ``"日料 1分钟"`` -> ``("日料", 1)``,
    ``"烧烤 今晚8点截止"`` -> ``("烧烤", minutes until 20:00)``, ``"tacos for 30m"`` -> ``("tacos", 30)``.
    Minutes is None when the text names no closing time (the text is then returned unchanged)."""
    m = _FOR.search(" " + text)
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()
        return text[: max(0, m.start() - 1)].strip(), n * (60 if unit.startswith("h") else 1440 if unit.startswith("d") else 1)
    work = zh_numerals_to_digits(text)
    m = _FOR_ZH.search(work)
    if m and m.start() > 0:
        n = 0.5 if m.group(1) == "半" else int(m.group(1))
        unit = m.group(2)
        minutes = n * (1440 if unit == "天" else 60 if "时" in unit or "钟头" in unit else 1)
        return work[: m.start()].strip(), max(1, int(minutes))
    for start in range(1, len(text)):
        head, tail = text[:start].strip(), text[start:].strip()
        dm = _DEADLINE.fullmatch(" " + tail) or _DEADLINE.fullmatch(tail)
        if not head or dm is None or text[start - 1] not in " \t" and not _CJK_BOUNDARY.match(text[start - 1 : start + 1]):
            continue
        when = parse_when(dm.group("en") or tail, now, tz)
        if when is not None and not when.text and when.due > now:
            return head, max(1, -(-int((when.due - now).total_seconds()) // 60))
    return text, None


_CJK_BOUNDARY = re.compile(r"[\u4e00-\u9fff][\u4e00-\u9fff\d]")
_VOTE = re.compile(r"^\s*(?:vote\s*|投\s*)?#?(\d{1,2})\s*[.!。]?\s*$", re.I)


def split_choices(text: str) -> list[str]:
    """``"a, b, c"``, ``"a | b"``, ``"a or b"``, ``"a、b"`` or ``"a b c"`` -> the choices."""
    for sep in (r"\|", r"[,，、;；]", r"\s+or\s+|还是|或者"):
        parts = [p.strip() for p in re.split(sep, text) if p.strip()]
        if len(parts) > 1:
            return parts
    return text.split()


class PollSkill:
    def __init__(self, services: Services, db: SkillDB, register: Register, *, poll_s: float = 1.0) -> None:
        self.s = services
        self.db = db
        self.store = PollStore(db)
        self.register = register
        self.loop = DueLoop("polls", self.run_due, services.clock, poll_s=poll_s, rng=services.rng)

    def commands(self) -> Iterable[Command]:
        return [
            Command(
                "poll",
                N_("Open a poll (members vote by replying with a number)"),
                self._cmd_poll,
                usage=N_("/poll Question? | a | b [for 30m]"),
            ),
            Command("pick", N_("Pick one at random"), self._cmd_pick, usage=N_("/pick a b c")),
        ]

    def tools(self) -> Iterable[Tool]:
        return [
            Tool(
                ToolSpec(
                    "open_poll",
                    "Open a poll in this group. Gather the options from the conversation.",
                    {
                        "type": "object",
                        "properties": {
                            "question": {"type": "string"},
                            "options": {
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 2,
                                "maxItems": MAX_OPTIONS,
                            },
                            "minutes": {"type": "integer", "description": "how long the poll stays open"},
                        },
                        "required": ["question", "options"],
                    },
                ),
                self._tool_open,
            ),
            Tool(
                ToolSpec(
                    "pick_random",
                    "Pick one of the options at random (fairly).",
                    {
                        "type": "object",
                        "properties": {"options": {"type": "array", "items": {"type": "string"}}},
                        "required": ["options"],
                    },
                ),
                self._tool_pick,
            ),
        ]

    def observers(self) -> list[Any]:
        return [self._observe_vote]

    async def start(self) -> None:
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    # ----------------------------------------------------------------- opening

    async def open(self, msg: Message, question: str, options: list[str], minutes: int, origin: str) -> str:
        """Open a poll in ``msg``'s group; returns the answer for whoever asked (the poll is its own message)."""
        return (await self._open(msg, question, options, minutes, origin))[1]

    async def _open(
        self, msg: Message, question: str, options: list[str], minutes: int, origin: str
    ) -> tuple[bool, str]:
        options = [o.strip()[:200] for o in options if o.strip()]
        options = list(dict.fromkeys(options))[:MAX_OPTIONS]
        question = question.strip()[:300]
        tr = await self.s.translator(msg.chat.key)
        if not question or len(options) < 2:
            return False, tr._("A poll needs a question and at least two different options.") + " " + tr._(USAGE)
        minutes = max(1, min(int(minutes or DEFAULT_MINUTES), MAX_MINUTES))
        await self.db.note_group(msg.chat)
        await self.s.load_group(msg.chat.key)
        adapter = self.s.adapters.get(msg.chat.platform)
        native = bool(adapter is not None and adapter.capabilities.polls)
        now = self.s.clock.now()
        poll, _ = await self.store.create(
            chat=msg.chat,
            thread=msg.thread,
            question=question,
            options=tuple(options),
            native=native,
            closes=now + timedelta(minutes=minutes),
            opener=(msg.author.user_id, msg.author.display_name),
            origin=origin,
            now=now,
        )
        if poll.message_id is None:  # new, or a replay of a request whose poll never went out
            text = self.poll_text(poll, now, tr)
            extra = {"poll": Poll(question, tuple(options), close_after_s=minutes * 60)} if native else {}
            ref = await self.s.send(
                Outgoing(
                    chat=msg.chat,
                    text=text,
                    reply_to=msg.id,
                    thread=msg.thread,
                    idempotency_key=origin,
                    **extra,
                )
            )  # type: ignore[arg-type]
            await self.store.set_message(poll.id, ref.message_id)
            self.loop.wake()
        until = fmt_when(poll.closes, self.s.tz_for(msg.chat.key), now, tr)
        return True, tr._("Poll #{no} is open until {when}.", no=poll.no, when=until)

    def poll_text(
        self, poll: PollRow, now: datetime, tr: Translator, counts: dict[int, int] | None = None
    ) -> str:
        """The poll message; with ``counts``, the tally so far (the message is edited as votes come in)."""
        lines = [tr._("📊 Poll #{no}: {question}", no=poll.no, question=poll.question)]
        if counts:
            lines += [f"{i}. {opt} — {counts.get(i, 0)}" for i, opt in enumerate(poll.options, 1)]
            lines.append(tr.ngettext("{n} vote so far", "{n} votes so far", sum(counts.values())))
        else:
            lines += [f"{i}. {opt}" for i, opt in enumerate(poll.options, 1)]
        closes = fmt_when(poll.closes, self.s.tz_for(poll.group_key), now, tr)
        if poll.native:
            lines.append(tr._("Vote in the poll, or reply to this message with the number of your choice. "
                              "Closes {when}.", when=closes))
        else:
            lines.append(tr._("Reply to this message with the number of your choice. Closes {when}.", when=closes))
        return "\n".join(lines)

    async def _cmd_poll(self, call: CommandCall) -> str | None:
        args = call.args.strip()
        m = re.match(r"^(?:close|end|结束)\s+#?(\d+)$", args, re.I)
        if m:
            return await self._close_early(call, int(m.group(1)))
        parts = [p.strip() for p in args.split("|")]
        key = call.message.chat.key
        await self.s.load_group(key)
        last, closing = split_closing(parts[-1], self.s.clock.now(), self.s.tz_for(key))
        minutes = closing or DEFAULT_MINUTES
        parts = parts[:-1] + ([last] if last else [])
        if len(parts) < 3:
            return (await self.s.translator(call.message.chat.key))._(USAGE)
        opened, answer = await self._open(
            call.message, parts[0], parts[1:], minutes, origin=f"cmd:{call.message.event_id}"
        )
        return None if opened else answer  # the poll message itself is the answer

    async def _close_early(self, call: CommandCall, no: int) -> str:
        poll = await self.store.get(call.message.chat.key, no)
        tr = await self.s.translator(call.message.chat.key)
        if poll is None or poll.status != "open":
            return tr._("There is no open poll #{no} here.", no=no)
        if poll.opener_id != call.message.author.user_id and not call.is_admin:
            return tr._("Only {opener} (who opened it) or a group admin can close poll #{no}.",
                        opener=poll.opener_name, no=no)
        await self.store.close_now(poll.id, self.s.clock.now())
        await self.loop.tick()
        return ""

    async def _tool_open(self, args: dict[str, Any], ctx: ToolContext) -> str:
        options = args.get("options")
        if not isinstance(options, list):
            return "error: options must be a list of strings"
        try:
            minutes = int(args.get("minutes") or DEFAULT_MINUTES)
        except (TypeError, ValueError):
            minutes = DEFAULT_MINUTES
        msg = ctx.message  # posted in the caller's group, whatever the arguments say
        return await self.open(
            msg,
            str(args.get("question") or ""),
            [str(o) for o in options],
            minutes,
            origin=f"tool:{msg.event_id}:{args.get('question')}",
        )

    # ----------------------------------------------------------------- picking

    def pick(self, choices: list[str], tr: Translator) -> str:
        choices = list(dict.fromkeys(c for c in choices if c))
        if len(choices) < 2:
            return tr._("Give me at least two things to pick from: /pick pizza sushi tacos")
        return tr._("🎲 I pick: {choice}", choice=self.s.rng.choice(choices))

    async def _cmd_pick(self, call: CommandCall) -> str:
        return self.pick(split_choices(call.args), await self.s.translator(call.message.chat.key))

    async def _tool_pick(self, args: dict[str, Any], ctx: ToolContext) -> str:
        options = args.get("options")
        tr = await self.s.translator(ctx.message.chat.key)
        return self.pick([str(o) for o in options] if isinstance(options, list) else [], tr)

    # ----------------------------------------------------------------- voting

    async def _observe_vote(self, obs: Observation) -> str | Reply | None:
        msg = obs.message
        if not obs.reply_to_me or msg.reply_to is None:
            return None
        poll = await self.store.by_message(msg.chat.key, msg.reply_to.message_id)
        if poll is None:
            return None
        choice = self._choice(poll, msg.text)
        if choice is None:
            return None  # not a vote: let the member answer the reply as usual
        tr = await self.s.translator(msg.chat.key)
        if not await self.store.vote(
            poll.id, msg.author.user_id, msg.author.display_name, choice, self.s.clock.now()
        ):
            return tr._("Poll #{no} is already closed.", no=poll.no)
        counts = await self.store.tally(poll.id)
        if await self._show_tally(poll, counts, tr):
            return HANDLED  # one tally, updated in place: no message per vote
        so_far = tr.ngettext("{n} vote so far", "{n} votes so far", sum(counts.values()))
        return f"🗳️ {msg.author.display_name}: {poll.options[choice - 1]} ({so_far})"

    async def _show_tally(self, poll: PollRow, counts: dict[int, int], tr: Translator) -> bool:
        """Edit the poll message to show the tally; False where the platform cannot edit it (no edits, or a
        native poll whose text cannot change): then the vote is acknowledged by a short reply instead."""
        adapter = self.s.adapters.get(poll.chat.platform)
        if poll.message_id is None or adapter is None or not adapter.capabilities.edit:
            return False
        text = self.poll_text(poll, self.s.clock.now(), tr, counts)
        try:
            await adapter.edit(SentRef(poll.chat, poll.message_id), text)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - the vote is counted either way
            log.info("the tally of poll %s in %s cannot be shown in place (%s)", poll.id, poll.group_key, exc)
            return False
        return True

    @staticmethod
    def _choice(poll: PollRow, text: str) -> int | None:
        m = _VOTE.match(text)
        if m:
            n = int(m.group(1))
            return n if 1 <= n <= len(poll.options) else None
        wanted = text.strip().casefold()
        for i, opt in enumerate(poll.options, 1):
            if opt.casefold() == wanted:
                return i
        return None

    # ----------------------------------------------------------------- closing

    async def run_due(self, now: datetime) -> int:
        closed = 0
        for poll in await self.store.due(now):
            if poll.chat.platform not in self.s.adapters:
                continue
            if await self.store.claim_closing(poll):
                closed += await self._announce(poll, now)
        return closed

    async def result(self, poll: PollRow, now: datetime) -> tuple[str, str | None]:
        """The announcement and the decision to record (None when nobody voted)."""
        counts = await self.store.tally(poll.id)
        tr = await self.s.translator(poll.group_key)
        lines = [tr._("📊 Poll #{no} closed: {question}", no=poll.no, question=poll.question)]
        lines += [f"{i}. {opt} — {counts.get(i, 0)}" for i, opt in enumerate(poll.options, 1)]
        if not counts:
            return "\n".join(lines + [tr._("Nobody voted, so nothing was decided.")]), None
        top = max(counts.values())
        leaders = [i for i in sorted(counts) if counts[i] == top]
        winner = leaders[0] if len(leaders) == 1 else self.s.rng.choice(leaders)
        if len(leaders) > 1:
            tied = tr.join([poll.options[i - 1] for i in leaders])
            lines.append(tr._("Tie between {tied}; I picked {winner} at random.", tied=tied,
                              winner=poll.options[winner - 1]))
        else:
            lines.append(tr.ngettext("Winner: {winner} ({top} of {n} vote).", "Winner: {winner} ({top} of {n} votes).",
                                     sum(counts.values()), winner=poll.options[winner - 1], top=top))
        decision = tr._("{question} → {winner} (poll #{no})", question=poll.question,
                        winner=poll.options[winner - 1], no=poll.no)
        return "\n".join(lines), decision

    async def _announce(self, poll: PollRow, now: datetime) -> int:
        text, decision = await self.result(poll, now)
        if decision:
            item, _ = await self.register.add(
                poll.chat, "decision", decision, now=now, source="poll", origin=f"poll:{poll.id}"
            )
            tr = await self.s.translator(poll.group_key)
            text += "\n" + tr._("Recorded as decision #{no} (/decisions).", no=item.no)
        out = Outgoing(
            chat=poll.chat,
            text=text,
            reply_to=poll.message_id,
            thread=poll.thread,
            idempotency_key=f"poll-close:{poll.id}",
        )
        try:
            await self.s.send(out)
        except Exception as exc:  # retry the announcement later; the poll stays closed for votes
            give_up = poll.attempts + 1 >= 5
            await self.store.announce_failed(poll, now + timedelta(seconds=30 * 2**poll.attempts), give_up)
            log.warning("could not announce poll %s in %s (%s)", poll.id, poll.group_key, type(exc).__name__)
            return 0
        return 1


def build(env: SkillEnv) -> SkillSet:
    skill = PollSkill(env.services, env.shared.db, env.shared.register)
    return SkillSet([skill], [skill])


plugin = SkillPlugin(
    name="polls",
    build=build,
    order=30,
    description="polls, native where the platform has them",
)
