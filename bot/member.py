"""The member pipeline: what the AI member does with every message of its groups.

    handle(msg)
      1 remember it (every message of an allowed group, whether or not it is addressed to the bot); in a
        relayed pai, pass it on to the pai's other groups (bot.relay); a deletion is forgotten instead
      2 an event handled before finishes its reply and stops there (bot.delivery: the reply ledger)
      3 decide whether to speak (bot.policy: mention, reply, command, DM, keyword; allowlists; bots)
      4 gates (bot.middlewares): quiet hours, rate limits, daily budget, before anything that may cost
      5 observers (skills watching every message), then an answer: a command, or context + brain (LLM and
        tools), or, without a model, an answer from memory; typing shown meanwhile (answering chain)
      6 reply (bot.delivery): once, quoting the trigger, through the chat's adapter; the welcome note on a
        group's first answer (replies chain). With ``llm.stream`` and a platform that edits, a model's answer
        is streamed (bot.streaming).

A provider failure ends as one fixed apology in the chat; details go to the log.
"""

from __future__ import annotations

import logging

from bot.admins import AdminCheck
from bot.admission import REFUSAL as ADMISSION_REFUSAL
from bot.admission import Admission
from bot.brain import APOLOGY, BrainUnavailable
from bot.commands import CommandCall, CommandRegistry, Observation, Reply
from bot.config import Settings
from bot.context import build_prompt, system_prompt
from bot.delivery import ReplyDelivery
from bot.erasure import Forgetter, memory_eraser
from bot.events import Message, Outgoing
from bot.i18n import detect_language
from bot.limits import REFUSALS
from bot.middleware import Turn, chain
from bot.middlewares import Chains
from bot.policy import Facts, decide, may_record, record_kind
from bot.ports import Erasure, TextSink, Tool, ToolContext
from bot.provenance import sources_for
from bot.recall import memory_answer, quotable, recall_filters, search_query
from bot.services import Services, record_of
from bot.streaming import ReplyStream

log = logging.getLogger("paibot.member")

Answer = tuple[str, "dict[str, object] | None"]


class Member:
    def __init__(
        self,
        services: Services,
        registry: CommandRegistry,
        chains: Chains = Chains(),
        admission: Admission | None = None,
    ) -> None:
        self.s = services
        self.registry = registry
        self.admission = admission
        self.delivery = ReplyDelivery(services, chains.replies)
        self.is_admin = AdminCheck(services)
        self._gated = chain(chains.gates, self._respond)
        self._answering = chains.answering

    async def handle(self, msg: Message) -> None:
        # An event of a platform still connecting (pending since a crash) waits until it is connected: its
        # admin checks and its reply need the platform (PlatformUnavailable keeps it in the inbox).
        self.s.ensure_connected(msg.chat.platform)
        await self.s.load_group(msg.chat.key)
        settings = self.s.settings_for(msg.chat.key)  # runtime /settings (e.g. the bot's name here) applied
        if not may_record(msg, settings):
            log.debug("ignoring %s from a group that is not served", msg.event_id)
            return
        if self.admission is not None and not await self._admitted(msg, settings):
            return
        pai = self.s.pai_of(msg.chat.key)  # config.yaml's pais and those made from chat
        reply_id = None
        relay = self.s.relay if self.s.pais.relays(msg.chat.key) else None
        if relay is not None:
            if msg.from_me:  # the echo of a copy or of an answer: recorded once, when the bot said it
                return
            msg, reply_id = await relay.localize(msg)
        await self.s.pais.note_chat(msg.chat)
        await self.s.people.note_name(msg.author)
        if msg.deleted:
            await self._deleted(msg, pai)
            return
        # The decision is made before recording: it says what the record is (a question to the bot, a
        # command, a statement), which decides whether it counts as evidence later (bot.policy.record_kind).
        # A relayed member message is recorded once, here in the group it was written in, as hers; the copies
        # the bot posts in the pai's other groups are never recorded (bot.relay).
        reply_to_me = (not msg.from_me and bool(msg.reply_to)
                       and await self.s.is_own_message(msg.chat, msg.reply_to.message_id))  # fmt: skip
        age_s = (self.s.clock.now() - msg.sent_at).total_seconds()
        decision = decide(msg, settings, Facts(reply_to_me, self.registry.names(), age_s))
        recording = await self._recording_allowed(msg)
        if recording:
            await self.s.memory.record(record_of(msg, pai, record_kind(msg, decision), reply_id))
        if relay is not None:
            await relay.message(msg)
        if msg.from_me:
            await self.s.state.group_set(msg.chat.key, f"own:{msg.id}", "1")
            return
        if await self.delivery.pending(msg):  # handled before: never think or answer twice
            return
        await self._gated(Turn(msg, pai, decision, reply_to_me, may_record=recording))

    async def _admitted(self, msg: Message, settings: Settings) -> bool:
        """A group the bot does not serve yet is admitted only while the hour has room (bot.admission).
        One that is not is neither recorded nor answered; addressed, it is told so, without a model call
        and without leaving anything in its memory."""
        assert self.admission is not None
        verdict = await self.admission.check(msg.chat.key)
        if verdict.allowed:
            return True
        log.info("not serving %s yet: too many new groups this hour", msg.chat.key)
        self.s.telemetry.refused(verdict.reason)
        addressed = decide(msg, settings, Facts(False, self.registry.names())).speak
        if verdict.notify and addressed:
            # nothing of the group is in memory: its language is the one this message is written in
            said = detect_language([msg.text])
            locale = self.s.catalogs.resolve(said) if said else None
            t = self.s.catalogs.translator(locale or await self.s.locale_of(msg.chat.key))
            text = t._(ADMISSION_REFUSAL)
            out = Outgoing(chat=msg.chat, text=text, reply_to=msg.id, thread=msg.thread,
                           mention_user_ids=(msg.author.user_id,), idempotency_key=msg.event_id)
            try:
                await self.s.adapter_for(msg.chat).send(out)
            except Exception as exc:  # a notice is best effort: never retried, never kept
                log.info("could not tell %s that it is not served yet: %s", msg.chat.key, exc)
        return False

    async def _respond(self, turn: Turn) -> None:
        """The end of the gates: observers, then the answer, or the refusal a gate decided."""
        msg = turn.message
        if await self._observe(turn):
            return
        if not turn.decision.speak:
            log.debug("not speaking on %s: %s", msg.event_id, turn.decision.reason)
            return
        if turn.refusal is not None:
            log.info("refused %s: %s", msg.event_id, turn.refusal.reason)
            self.s.telemetry.refused(turn.refusal.reason)
            if turn.refusal.notify:
                await self.delivery.reply(msg, (await self.s.translator(msg.chat.key))._(REFUSALS[turn.refusal.reason]))
            return
        if self._streams(turn):
            await self._stream_answer(turn)
            return
        produced: list[Answer] = []

        async def think(t: Turn) -> None:
            produced.append(await self._think(t))

        await chain(self._answering, think)(turn)
        text, extra = produced[0] if produced else ("", None)
        if text:
            await self.delivery.reply(msg, text, extra)

    async def _observe(self, turn: Turn) -> bool:
        """Run the skills' observers; True when one of them answered the message."""
        observers = self.registry.observers()
        msg = turn.message
        if not observers or msg.author.is_bot:
            return False
        seen = Observation(
            msg, turn.pai, turn.decision, turn.reply_to_me, self.s, turn.may_answer, turn.may_record
        )
        for observer in observers:
            result = await observer(seen)
            if result is None or result == "":
                continue
            text, extra = (result.text, result.outgoing_extra) if isinstance(result, Reply) else (result, None)
            if text or extra:  # a Reply with neither (``HANDLED``) consumes the message silently
                await self.delivery.reply(msg, text, extra)
            return True
        return False

    async def _deleted(self, msg: Message, pai: str) -> None:
        """A message was deleted from its chat: it leaves the memory, and its copies in the pai's other
        groups go too. It is forgotten like ``paibot memory forget --id`` forgets a message: through every
        store (``bot.erasure.Forgetter``), the bot's messages quoting it included; the relay's copies follow
        the deletion itself (``Relay.message``), not the erasure."""
        erasers = [e for e in self.s.erasers if e is not self.s.relay] or [memory_eraser(self.s.memory)]
        await Forgetter(erasers).forget(Erasure(pai, (msg.chat.key,), message_ids=(msg.id,)))
        if self.s.relay is not None:
            await self.s.relay.message(msg)

    async def _recording_allowed(self, msg: Message) -> bool:
        """Members may opt out of being recorded in a group (``/settings`` / privacy skill sets the flag)."""
        flag = await self.s.state.group_get(msg.chat.key, f"optout:{msg.author.user_id}")
        return not flag

    async def _think(self, turn: Turn) -> Answer:
        if turn.decision.command:
            return await self._run_command(turn)
        return await self.answer(turn.message, turn.decision.prompt, turn.pai), None

    async def _run_command(self, turn: Turn) -> Answer:
        msg = turn.message
        command = self.registry.get(turn.decision.command or "")
        assert command is not None
        admin = await self.is_admin(msg)
        if command.admin_only and not admin:
            t = await self.s.translator(msg.chat.key)
            return t._("Only admins of this group can use /{command}.", command=command.name), None
        call = CommandCall(msg, turn.decision.args, turn.pai, admin, self.s)
        result = await command.handler(call)
        if isinstance(result, Reply):
            return result.text, result.outgoing_extra
        return result or "", None

    async def answer(self, msg: Message, question: str, pai: str, sink: TextSink | None = None) -> str:
        """Answer ``question`` asked in ``msg``: with the model and the group's context, or from memory."""
        s = self.s
        settings = s.settings
        tz = s.tz_for(msg.chat.key)
        query = search_query(question) or msg.text
        hits = await s.memory.search(pai, query, k=settings.memory.recall_hits, filters=recall_filters(question))
        hits = [h for h in hits if h.record.id != msg.id]
        if s.brain is None:
            t = await s.translator(msg.chat.key)
            return memory_answer(quotable(hits, question), tz, t, with_hint=True)
        recent = await s.memory.recent(pai, settings.memory.recent_messages)
        key = msg.chat.key
        system = system_prompt(
            s.group_setting(key, "persona"), s.name_for(key), msg.chat.title, s.clock.now(), tz,
            s.group_setting(key, "language"),
        )  # fmt: skip
        sources = await sources_for(s, key, pai, [*recent, *(h.record for h in hits)])
        parts = build_prompt(
            system=system, trigger=msg, question=question, recent=recent, hits=hits, tz=tz,
            budget_tokens=settings.llm.context_tokens, sources=sources,
        )  # fmt: skip
        # Admin rights are exercised only by commands an admin types, never through the model: text the model
        # reads while answering an admin (a member's message, a file, a quote) must not borrow the admin's
        # authority (a confused deputy). Tools tell the model which command an admin can send instead.
        ctx = ToolContext(message=msg, pai=pai, caller_is_admin=False)
        try:
            tools = self.registry.tools_for(msg.chat.key)
            reply = await s.brain.respond(parts.render(), tools, ctx, msg.chat.key, on_text=sink)
        except BrainUnavailable:
            log.warning("no model answered for %s", msg.event_id)
            return (await s.translator(msg.chat.key))._(APOLOGY)
        return (reply.text.strip() or "🤔") + _sources_note(tools, reply.tool_calls_made)

    # ------------------------------------------------------------------ streamed answers

    def _streams(self, turn: Turn) -> bool:
        """A model's answer is streamed by edits when ``llm.stream`` is on and the chat's platform edits."""
        if turn.decision.command or self.s.brain is None or not self.s.settings.llm.stream:
            return False
        adapter = self.s.adapters.get(turn.message.chat.platform)
        return adapter is not None and adapter.capabilities.edit

    async def _stream_answer(self, turn: Turn) -> None:
        """Answer with the model, showing the text while it is written (``bot.streaming``). The reply is
        claimed before its first message; when nothing was streamed (a short or non-streaming answer) it
        is replied the ordinary way. A failure after the first message leaves the fixed apology there."""
        msg = turn.message
        adapter = self.s.adapter_for(msg.chat)
        claim = self.delivery.streamed(msg)
        streams: list[ReplyStream] = []
        answers: list[str] = []

        async def answer(t: Turn) -> None:
            stream = ReplyStream(msg, self.s, adapter, claim.claim, claim.release, on_open=t.stop_typing)
            streams.append(stream)
            try:
                answers.append(await self.answer(msg, t.decision.prompt, t.pai, stream))
            except Exception:
                if stream.opened:  # never leave half an answer on screen
                    await stream.finish((await self.s.translator(msg.chat.key))._(APOLOGY))
                raise

        await chain(self._answering, answer)(turn)
        if not answers:
            return
        if not await streams[0].finish(answers[0]):
            await self.delivery.reply(msg, answers[0])


def _sources_note(tools: list[Tool], called: tuple[str, ...]) -> str:
    """"(🔧 MCP weather/forecast)" after an answer that used tools from outside paibot: the chat sees where a
    result came from (no words, so nothing to translate)."""
    sources = {t.spec.name: t.source for t in tools if t.source}
    used = list(dict.fromkeys(sources[name] for name in called if name in sources))
    return f"\n\n(🔧 {', '.join(used)})" if used else ""
