"""The member pipeline: what the AI member does with every message of its groups.

    handle(msg)
      1 remember it (every message of an allowed group, whether or not it is addressed to the bot)
      2 decide whether to speak (policy: mention, reply, command, DM, keyword; allowlists; bots)
      3 limits: rate limits, daily budget, oversized input — before any LLM call
      4 think: a command, or context + brain (LLM and tools), or, without a model, an answer from memory
      5 reply: once (reply ledger), quoting the trigger, through the chat's adapter; remember the reply
        (with ``llm.stream`` and a platform that edits, a model's answer is streamed: bot.streaming)

A provider failure ends as one fixed apology in the chat; details go to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from bot.admission import REFUSAL as ADMISSION_REFUSAL
from bot.admission import Admission
from bot.brain import APOLOGY, BrainUnavailable
from bot.commands import CommandCall, CommandRegistry, Observation, Reply
from bot.config import Settings
from bot.context import build_prompt, system_prompt
from bot.errors import DeliveryUncertain, PlatformUnavailable
from bot.events import Message, Outgoing
from bot.limits import REFUSALS, RateLimiter, Verdict
from bot.policy import Decision, Facts, decide, may_record, name_pattern
from bot.ports import MemoryHit, TextSink, ToolContext
from bot.recall import memory_answer, quotable, search_query
from bot.services import Services, record_of
from bot.streaming import ReplyStream, resume_streamed, streamed_payload

log = logging.getLogger("paibot.member")

WELCOME = (
    "👋 I'm {name}, this group's AI member. I remember what is said here (this group only) so I can answer "
    "with context. Mention me or reply to me to ask something; /help lists what I can do. "
    "/what-do-you-know-about-me shows what I keep about you, /optout stops recording your messages and "
    "/forget-me removes them."
)


def encode_reply(out: Outgoing) -> str:
    """What the reply ledger keeps of a reply, to resend it after a crash (files and polls are not kept)."""
    return json.dumps({
        "text": out.text, "reply_to": out.reply_to, "thread": out.thread,
        "mention_user_ids": list(out.mention_user_ids), "resendable": not out.files and out.poll is None,
    }, ensure_ascii=False)


def decode_reply(msg: Message, payload: str) -> Outgoing | None:
    data = json.loads(payload) if payload else None
    if not data or not data.get("resendable"):
        return None
    return Outgoing(
        chat=msg.chat, text=data["text"], reply_to=data["reply_to"], thread=data["thread"],
        mention_user_ids=tuple(data["mention_user_ids"]), idempotency_key=msg.event_id,
    )


class Member:
    def __init__(
        self,
        services: Services,
        registry: CommandRegistry,
        limiter: RateLimiter,
        admission: Admission | None = None,
    ) -> None:
        self.s = services
        self.registry = registry
        self.limiter = limiter
        self.admission = admission

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
        pai = settings.pai_of(msg.chat.key)
        if await self._recording_allowed(msg):
            await self.s.memory.record(record_of(msg, pai))
        if msg.from_me:
            await self.s.state.group_set(msg.chat.key, f"own:{msg.id}", "1")
            return
        replied = await self.s.state.reply_state(msg.event_id)
        if replied is not None:  # handled before: never think or answer twice
            if replied == "retry":
                await self._retry_reply(msg)
            elif replied == "sending":
                await self._resume_reply(msg)
            return
        reply_to_me = bool(msg.reply_to) and await self.s.is_own_message(msg.chat, msg.reply_to.message_id)
        age_s = (self.s.clock.now() - msg.sent_at).total_seconds()
        decision = decide(msg, settings, Facts(reply_to_me, self.registry.names(), age_s))
        if decision.speak and decision.reason == "keyword" and self.s.quiet_now(msg.chat.key):
            decision = Decision(False, "quiet hours")  # unasked-for answers wait; mentions and commands don't
        # Rate limits and budgets are decided before anything that may cost (observers answering included).
        # A quoted message is input too (a fact check sends it whole): it counts towards the size limit.
        quoted = msg.reply_to.text if msg.reply_to is not None else ""
        verdict = None
        if decision.speak:
            verdict = await self.limiter.check(msg.chat.key, msg.author.key, msg.text + quoted)
        try:
            await self._respond(msg, pai, decision, reply_to_me, verdict)
        finally:
            if verdict is not None and verdict.allowed:
                self.limiter.done(msg.author.key)  # its usage is in the ledger now: release the reservation

    async def _respond(
        self, msg: Message, pai: str, decision: Decision, reply_to_me: bool, verdict: Verdict | None
    ) -> None:
        if await self._observe(msg, pai, decision, reply_to_me, verdict is None or verdict.allowed):
            return
        if not decision.speak:
            log.debug("not speaking on %s: %s", msg.event_id, decision.reason)
            return
        if verdict is not None and not verdict.allowed:
            log.info("refused %s: %s", msg.event_id, verdict.reason)
            if verdict.notify:
                await self._reply(msg, REFUSALS[verdict.reason])
            return
        if self._streams(msg, decision):
            await self._stream_answer(msg, decision, pai)
            return
        text, extra = await self._think(msg, decision, pai)
        if text:
            await self._reply(msg, text, extra)

    async def _admitted(self, msg: Message, settings: Settings) -> bool:
        """A group the bot does not serve yet is admitted only while the hour has room (bot.admission).
        One that is not is neither recorded nor answered; addressed, it is told so, without a model call
        and without leaving anything in its memory."""
        assert self.admission is not None
        verdict = await self.admission.check(msg.chat.key)
        if verdict.allowed:
            return True
        log.info("not serving %s yet: too many new groups this hour", msg.chat.key)
        addressed = decide(msg, settings, Facts(False, self.registry.names())).speak
        if verdict.notify and addressed:
            out = Outgoing(chat=msg.chat, text=ADMISSION_REFUSAL, reply_to=msg.id, thread=msg.thread,
                           mention_user_ids=(msg.author.user_id,), idempotency_key=msg.event_id)
            try:
                await self.s.adapter_for(msg.chat).send(out)
            except Exception as exc:  # a notice is best effort: never retried, never kept
                log.info("could not tell %s that it is not served yet: %s", msg.chat.key, exc)
        return False

    async def _observe(
        self, msg: Message, pai: str, decision: Decision, reply_to_me: bool, may_answer: bool
    ) -> bool:
        """Run the skills' observers; True when one of them answered the message."""
        observers = self.registry.observers()
        if not observers or msg.author.is_bot:
            return False
        seen = Observation(msg, pai, decision, reply_to_me, self.s, may_answer)
        for observer in observers:
            result = await observer(seen)
            if result is None or result == "":
                continue
            text, extra = (result.text, result.outgoing_extra) if isinstance(result, Reply) else (result, None)
            if text or extra:  # a Reply with neither (``HANDLED``) consumes the message silently
                await self._reply(msg, text, extra)
            return True
        return False

    async def _recording_allowed(self, msg: Message) -> bool:
        """Members may opt out of being recorded in a group (``/settings`` / privacy skill sets the flag)."""
        flag = await self.s.state.group_get(msg.chat.key, f"optout:{msg.author.user_id}")
        return not flag  # /optin stores "" (StateDB has no delete)

    async def is_admin(self, msg: Message) -> bool:
        """Admins by immutable id: configured operators, the group's configured admins, or platform admins."""
        if msg.forwarded or msg.edited:
            return False
        key = msg.author.key
        settings = self.s.settings
        if key in settings.bot.admins or key in settings.group(msg.chat.key).admins:
            return True
        # The adapter's optional ``AdminChecker`` role, called on the adapter itself (not the Protocol's stub).
        check = getattr(self.s.adapters.get(msg.chat.platform), "is_chat_admin", None)
        if check is not None and not msg.is_direct:
            try:
                return await check(msg.chat, msg.author) is True
            except Exception:  # an adapter failing to answer means "not proven admin"
                log.warning("could not check admin rights of %s in %s", key, msg.chat.key, exc_info=True)
        return False

    async def _think(self, msg: Message, decision: Decision, pai: str) -> tuple[str, dict[str, object] | None]:
        async with self._typing(msg):
            if decision.command:
                return await self._run_command(msg, decision, pai)
            return await self.answer(msg, decision.prompt, pai), None

    async def _run_command(
        self, msg: Message, decision: Decision, pai: str
    ) -> tuple[str, dict[str, object] | None]:
        command = self.registry.get(decision.command or "")
        assert command is not None
        admin = await self.is_admin(msg)
        if command.admin_only and not admin:
            return f"Only admins of this group can use /{command.name}.", None
        call = CommandCall(msg, decision.args, pai, admin, self.s)
        result = await command.handler(call)
        if isinstance(result, Reply):
            return result.text, result.outgoing_extra
        return result or "", None

    async def answer(self, msg: Message, question: str, pai: str, sink: TextSink | None = None) -> str:
        """Answer ``question`` asked in ``msg``: with the model and the group's context, or from memory."""
        s = self.s
        settings = s.settings
        tz = s.tz_for(msg.chat.key)
        hits = await s.memory.search(pai, search_query(question) or msg.text, k=settings.memory.recall_hits)
        if s.brain is None:
            asked = self._questions_to_me(hits)
            return memory_answer(quotable(hits, question, {msg.id} | asked), tz, with_hint=True)
        recent = await s.memory.recent(pai, settings.memory.recent_messages)
        key = msg.chat.key
        system = system_prompt(
            s.group_setting(key, "persona"), s.name_for(key), msg.chat.title, s.clock.now(), tz,
            s.group_setting(key, "language"),
        )
        parts = build_prompt(
            system=system, trigger=msg, question=question, recent=recent, hits=hits, tz=tz,
            budget_tokens=settings.llm.context_tokens,
        )
        # Admin rights are exercised only by commands an admin types, never through the model: text the model
        # reads while answering an admin (a member's message, a file, a quote) must not borrow the admin's
        # authority (a confused deputy). Tools tell the model which command an admin can send instead.
        ctx = ToolContext(message=msg, pai=pai, caller_is_admin=False)
        try:
            reply = await s.brain.respond(parts.render(), self.registry.tools(), ctx, msg.chat.key, on_text=sink)
        except BrainUnavailable:
            log.warning("no model answered for %s", msg.event_id)
            return APOLOGY
        return reply.text.strip() or "🤔"

    def _questions_to_me(self, hits: list[MemoryHit]) -> set[str]:
        """Ids of hits that were themselves questions put to the bot (they hold no answer)."""
        pattern = name_pattern((self.s.settings.bot.name, *self.s.settings.bot.aliases))
        return {h.record.id for h in hits if pattern.search(h.record.text)}

    async def _reply(self, msg: Message, text: str, extra: dict[str, object] | None = None) -> None:
        s = self.s
        key = msg.chat.key
        welcome = s.settings.bot.welcome and await s.state.group_get(key, "welcomed") is None
        if welcome:
            text = f"{text}\n\n{WELCOME.format(name=s.name_for(key))}"
        out = Outgoing(
            chat=msg.chat, text=text, reply_to=msg.id, thread=msg.thread,
            mention_user_ids=(msg.author.user_id,), idempotency_key=msg.event_id, **(extra or {}),
        )
        if not await s.state.claim_reply(msg.event_id, encode_reply(out)):
            log.info("reply to %s was already claimed; not sending twice", msg.event_id)
            return
        if welcome:
            await s.state.group_set(key, "welcomed", "1")
        await self._deliver(msg, out)

    async def _resume_reply(self, msg: Message) -> None:
        """A crash interrupted the reply to ``msg``: resend the very same reply where the platform
        deduplicates sends (so it is delivered exactly once); elsewhere it may be lost, never doubled.
        A streamed reply is completed by editing its message instead (``bot.streaming.resume_streamed``)."""
        adapter = self.s.adapters.get(msg.chat.platform)
        payload = await self.s.state.reply_payload(msg.event_id)
        streamed = streamed_payload(payload)
        if streamed is not None:
            await resume_streamed(self.s, adapter, msg, streamed)
            return
        out = decode_reply(msg, payload)
        if adapter is None or out is None or not await self._safe_to_resend(adapter, out):
            log.warning("the reply to %s was interrupted by a restart and may not have arrived", msg.event_id)
            return
        log.info("resending the reply to %s that a restart interrupted", msg.event_id)
        await self._deliver(msg, out)

    @staticmethod
    async def _safe_to_resend(adapter: object, out: Outgoing) -> bool:
        """Resending cannot duplicate: the platform deduplicates sends, or the adapter's journal shows
        that no request for this reply ever went out (``bot.ports.SendJournal``)."""
        if adapter.capabilities.idempotent_sends:  # type: ignore[attr-defined]
            return True
        attempted = getattr(adapter, "delivery_attempted", None)
        return attempted is not None and not await attempted(out)

    async def _retry_reply(self, msg: Message) -> None:
        """The platform was unreachable when this reply was sent (nothing was delivered): send the same
        reply again, without asking the model twice."""
        out = decode_reply(msg, await self.s.state.reply_payload(msg.event_id))
        if out is None:
            log.warning("the reply to %s held files or a poll and was lost in a platform outage", msg.event_id)
            await self.s.state.move_reply(msg.event_id, "retry", "sent")
            return
        await self.s.state.move_reply(msg.event_id, "retry", "sending")
        await self._deliver(msg, out)

    async def _deliver(self, msg: Message, out: Outgoing) -> None:
        s = self.s
        try:
            ref = await s.send(out)
        except PlatformUnavailable:
            # Nothing was delivered: keep the reply (the ledger holds it) and let the worker retry later.
            await asyncio.shield(s.state.move_reply(msg.event_id, "sending", "retry"))
            raise
        except DeliveryUncertain as exc:
            adapter = s.adapters.get(msg.chat.platform)
            if adapter is not None and adapter.capabilities.idempotent_sends:
                raise PlatformUnavailable(str(exc)) from exc  # still "sending": the resend is deduplicated
            log.warning("the reply to %s may not have arrived (%s); not repeating it", msg.event_id, exc)
            return
        except BaseException:
            # The platform refused or we were cancelled before it answered: let a retry send it again.
            await asyncio.shield(s.state.release_reply(msg.event_id))
            raise
        await s.state.reply_sent(msg.event_id, ref.message_id)

    # ------------------------------------------------------------------ streamed answers

    def _streams(self, msg: Message, decision: Decision) -> bool:
        """A model's answer is streamed by edits when ``llm.stream`` is on and the chat's platform edits."""
        if decision.command or self.s.brain is None or not self.s.settings.llm.stream:
            return False
        adapter = self.s.adapters.get(msg.chat.platform)
        return adapter is not None and adapter.capabilities.edit

    async def _stream_answer(self, msg: Message, decision: Decision, pai: str) -> None:
        """Answer with the model, showing the text while it is written (``bot.streaming``). The reply is
        claimed before its first message; when nothing was streamed (a short or non-streaming answer) it
        is replied the ordinary way. A failure after the first message leaves the fixed apology there."""
        adapter = self.s.adapter_for(msg.chat)
        async with self._typing(msg) as stop_typing:
            stream = ReplyStream(
                msg, self.s, adapter, lambda payload: self._claim_streamed(msg, payload),
                lambda appended: self._release_streamed(msg, appended), on_open=stop_typing,
            )
            try:
                text = await self.answer(msg, decision.prompt, pai, stream)
            except Exception:
                if stream.opened:  # never leave half an answer on screen
                    await stream.finish(APOLOGY)
                raise
        if not await stream.finish(text):
            await self._reply(msg, text)

    async def _claim_streamed(self, msg: Message, payload: str) -> str | None:
        """Claim the reply before a streamed answer's first message. Returns what to append to the final
        text (the welcome note of a group's first answer, else ""), or None when it was claimed already."""
        s = self.s
        key = msg.chat.key
        welcome = s.settings.bot.welcome and await s.state.group_get(key, "welcomed") is None
        if not await s.state.claim_reply(msg.event_id, payload):
            log.info("reply to %s was already claimed; not streaming it", msg.event_id)
            return None
        if welcome:
            await s.state.group_set(key, "welcomed", "1")
            return f"\n\n{WELCOME.format(name=s.name_for(key))}"
        return ""

    async def _release_streamed(self, msg: Message, appended: str) -> None:
        """Undo ``_claim_streamed`` (its first send failed): the ordinary reply claims again later."""
        await self.s.state.release_reply(msg.event_id)
        if appended:
            await self.s.state.group_delete(msg.chat.key, "welcomed")

    @contextlib.asynccontextmanager
    async def _typing(self, msg: Message):  # type: ignore[no-untyped-def]
        """Keep a typing indicator up while the block runs; yields ``stop()`` to end it sooner (once a
        streamed answer's first message is on screen)."""
        adapter = self.s.adapters.get(msg.chat.platform)
        if adapter is None or not adapter.capabilities.typing:
            yield _no_typing
            return

        async def keep_typing() -> None:
            while True:
                with contextlib.suppress(Exception):
                    await adapter.typing(msg.chat)
                await asyncio.sleep(4.0)

        task = asyncio.create_task(keep_typing(), name=f"typing:{msg.chat.key}")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        try:
            yield stop
        finally:
            await stop()


async def _no_typing() -> None:
    return None
