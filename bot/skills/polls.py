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

from bot.commands import Command, CommandCall, CommandRegistry, Observation
from bot.events import Message, Outgoing, Poll
from bot.ports import Tool, ToolContext, ToolSpec
from bot.services import Services
from bot.skills import builtin
from bot.skills.duejobs import DueLoop
from bot.skills.poll_store import PollRow, PollStore
from bot.skills.register import Register, shared_register
from bot.skills.reminders import fmt_when
from bot.skills.skilldb import SkillDB, skill_db

log = logging.getLogger("paibot.skills.polls")

DEFAULT_MINUTES = 60
MAX_MINUTES = 7 * 24 * 60
MAX_OPTIONS = 10
USAGE = "Usage: /poll Question? | option a | option b [| ...] [for 30m]"
_FOR = re.compile(r"\s+(?:for|in)\s+(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?)\s*$", re.I)
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
                "Open a poll (members vote by replying with a number)",
                self._cmd_poll,
                usage="/poll Question? | a | b [for 30m]",
            ),
            Command("pick", "Pick one at random", self._cmd_pick, usage="/pick a b c"),
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
        options = [o.strip()[:200] for o in options if o.strip()]
        options = list(dict.fromkeys(options))[:MAX_OPTIONS]
        question = question.strip()[:300]
        if not question or len(options) < 2:
            return "A poll needs a question and at least two different options. " + USAGE
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
            text = self.poll_text(poll, now)
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
        return f"Poll #{poll.no} is open until {fmt_when(poll.closes, self.s.tz_for(msg.chat.key), now)}."

    def poll_text(self, poll: PollRow, now: datetime) -> str:
        lines = [f"📊 Poll #{poll.no}: {poll.question}"]
        lines += [f"{i}. {opt}" for i, opt in enumerate(poll.options, 1)]
        how = "Vote in the poll, or reply" if poll.native else "Reply"
        closes = fmt_when(poll.closes, self.s.tz_for(poll.group_key), now)
        lines.append(f"{how} to this message with the number of your choice. Closes {closes}.")
        return "\n".join(lines)

    async def _cmd_poll(self, call: CommandCall) -> str | None:
        args = call.args.strip()
        m = re.match(r"^(?:close|end|结束)\s+#?(\d+)$", args, re.I)
        if m:
            return await self._close_early(call, int(m.group(1)))
        minutes = DEFAULT_MINUTES
        fm = _FOR.search(args)
        if fm:
            n, unit = int(fm.group(1)), fm.group(2).lower()
            minutes = n * (60 if unit.startswith("h") else 1440 if unit.startswith("d") else 1)
            args = args[: fm.start()]
        parts = [p.strip() for p in args.split("|")]
        if len(parts) < 3:
            return USAGE
        answer = await self.open(
            call.message, parts[0], parts[1:], minutes, origin=f"cmd:{call.message.event_id}"
        )
        return None if answer.startswith("Poll #") else answer  # the poll message itself is the answer

    async def _close_early(self, call: CommandCall, no: int) -> str:
        poll = await self.store.get(call.message.chat.key, no)
        if poll is None or poll.status != "open":
            return f"There is no open poll #{no} here."
        if poll.opener_id != call.message.author.user_id and not call.is_admin:
            return f"Only {poll.opener_name} (who opened it) or a group admin can close poll #{no}."
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

    def pick(self, choices: list[str]) -> str:
        choices = list(dict.fromkeys(c for c in choices if c))
        if len(choices) < 2:
            return "Give me at least two things to pick from: /pick pizza sushi tacos"
        return f"🎲 I pick: {self.s.rng.choice(choices)}"

    async def _cmd_pick(self, call: CommandCall) -> str:
        return self.pick(split_choices(call.args))

    async def _tool_pick(self, args: dict[str, Any], ctx: ToolContext) -> str:
        options = args.get("options")
        return self.pick([str(o) for o in options] if isinstance(options, list) else [])

    # ----------------------------------------------------------------- voting

    async def _observe_vote(self, obs: Observation) -> str | None:
        msg = obs.message
        if not obs.reply_to_me or msg.reply_to is None:
            return None
        poll = await self.store.by_message(msg.chat.key, msg.reply_to.message_id)
        if poll is None:
            return None
        choice = self._choice(poll, msg.text)
        if choice is None:
            return None  # not a vote: let the member answer the reply as usual
        if not await self.store.vote(
            poll.id, msg.author.user_id, msg.author.display_name, choice, self.s.clock.now()
        ):
            return f"Poll #{poll.no} is already closed."
        counts = await self.store.tally(poll.id)
        return (
            f"🗳️ {msg.author.display_name}: {poll.options[choice - 1]} ({sum(counts.values())} votes so far)"
        )

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
        lines = [f"📊 Poll #{poll.no} closed: {poll.question}"]
        lines += [f"{i}. {opt} — {counts.get(i, 0)}" for i, opt in enumerate(poll.options, 1)]
        if not counts:
            return "\n".join(lines + ["Nobody voted, so nothing was decided."]), None
        top = max(counts.values())
        leaders = [i for i in sorted(counts) if counts[i] == top]
        winner = leaders[0] if len(leaders) == 1 else self.s.rng.choice(leaders)
        if len(leaders) > 1:
            tied = " and ".join(poll.options[i - 1] for i in leaders)
            lines.append(f"Tie between {tied}; I picked {poll.options[winner - 1]} at random.")
        else:
            lines.append(f"Winner: {poll.options[winner - 1]} ({top} of {sum(counts.values())} votes).")
        return "\n".join(lines), f"{poll.question} → {poll.options[winner - 1]} (poll #{poll.no})"

    async def _announce(self, poll: PollRow, now: datetime) -> int:
        text, decision = await self.result(poll, now)
        if decision:
            item, _ = await self.register.add(
                poll.chat, "decision", decision, now=now, source="poll", origin=f"poll:{poll.id}"
            )
            text += f"\nRecorded as decision #{item.no} (/decisions)."
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


def build(services: Services, registry: CommandRegistry) -> tuple[list[Any], list[Any]]:
    db, created = skill_db(services)
    skill = PollSkill(services, db, shared_register(services.extras, db))
    services.extras["skills.polls"] = skill
    return [skill], ([db] if created else []) + [skill]


plugin = builtin("polls", build, 30, "polls, native where the platform has them")
