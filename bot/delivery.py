"""Replies: the reply ledger's owner. Every reply to an event is claimed once, sent, and marked sent.

    reply(msg, text)       the replies chain (``bot.middleware``: the welcome note) -> claim the reply in the
                           ledger (a reply claimed before is never sent twice) -> send -> mark sent
    pending(msg)           an event handled before: "retry" (the platform was down: resend the same reply,
                           the model is not asked again), "sending" (a crash interrupted it: resend only where
                           that cannot duplicate it, or complete a streamed reply) -> True; otherwise False
    streamed(msg)          the claim of a reply streamed by edits (``bot.streaming``), through the same chain

Outage semantics: ``PlatformUnavailable`` keeps the reply ("retry") and re-raises so the worker waits the
outage out; ``DeliveryUncertain`` is retried only where sends are idempotent, else logged and dropped (never
doubled); any other failure gives the claim back so a retry of the event may send it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from bot.errors import DeliveryUncertain, PlatformUnavailable
from bot.events import Message, Outgoing
from bot.middleware import Middleware, ReplyDraft, chain
from bot.ports import ChatAdapter
from bot.services import Services
from bot.streaming import resume_streamed, streamed_payload

log = logging.getLogger("paibot.delivery")


def encode_reply(out: Outgoing) -> str:
    """What the reply ledger keeps of a reply, to resend it after a crash (files and polls are not kept)."""
    return json.dumps({
        "text": out.text, "reply_to": out.reply_to, "thread": out.thread,
        "mention_user_ids": list(out.mention_user_ids), "resendable": not out.files and out.poll is None,
    }, ensure_ascii=False)  # fmt: skip


def decode_reply(msg: Message, payload: str) -> Outgoing | None:
    data = json.loads(payload) if payload else None
    if not data or not data.get("resendable"):
        return None
    return Outgoing(
        chat=msg.chat, text=data["text"], reply_to=data["reply_to"], thread=data["thread"],
        mention_user_ids=tuple(data["mention_user_ids"]), idempotency_key=msg.event_id,
    )  # fmt: skip


async def safe_to_resend(adapter: ChatAdapter, out: Outgoing) -> bool:
    """Resending ``out`` after a crash cannot duplicate it: the platform deduplicates sends, or the
    adapter's journal shows that no request for it ever went out (``bot.ports.SendJournal``)."""
    if adapter.capabilities.idempotent_sends:
        return True
    attempted = getattr(adapter, "delivery_attempted", None)
    return attempted is not None and not await attempted(out)


class ReplyDelivery:
    def __init__(self, services: Services, middlewares: Sequence[Middleware[ReplyDraft]] = ()) -> None:
        self.s = services
        self._middlewares = tuple(middlewares)

    # ----------------------------------------------------------------- a new reply

    async def reply(self, msg: Message, text: str, extra: dict[str, object] | None = None) -> None:
        """Reply to ``msg`` (quoting it, pinging only its author), once."""
        await chain(self._middlewares, self._claim_and_send)(ReplyDraft(msg, text, extra))

    async def _claim_and_send(self, draft: ReplyDraft) -> None:
        msg = draft.message
        out = Outgoing(
            chat=msg.chat, text=draft.full_text, reply_to=msg.id, thread=msg.thread,
            mention_user_ids=(msg.author.user_id,), idempotency_key=msg.event_id, **(draft.extra or {}),
        )  # fmt: skip
        if not await self.s.state.claim_reply(msg.event_id, encode_reply(out)):
            log.info("reply to %s was already claimed; not sending twice", msg.event_id)
            return
        for hook in draft.on_claimed:
            await hook()
        await self.deliver(msg, out)

    def streamed(self, msg: Message) -> StreamedClaim:
        """The claim of a reply to ``msg`` streamed by edits (for ``bot.streaming.ReplyStream``)."""
        return StreamedClaim(self, msg)

    # ----------------------------------------------------------------- an event handled before

    async def pending(self, msg: Message) -> bool:
        """Finish what an earlier handling of ``msg`` left (see the module docstring); True when ``msg``
        was handled before, so it must not be thought about or answered again."""
        replied = await self.s.state.reply_state(msg.event_id)
        if replied is None:
            return False
        if replied == "retry":
            await self._retry(msg)
        elif replied == "sending":
            await self._resume(msg)
        return True

    async def _resume(self, msg: Message) -> None:
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
        await self.deliver(msg, out)

    @staticmethod
    async def _safe_to_resend(adapter: ChatAdapter, out: Outgoing) -> bool:
        return await safe_to_resend(adapter, out)

    async def _retry(self, msg: Message) -> None:
        """The platform was unreachable when this reply was sent (nothing was delivered): send the same
        reply again, without asking the model twice."""
        out = decode_reply(msg, await self.s.state.reply_payload(msg.event_id))
        if out is None:
            log.warning(
                "the reply to %s held files or a poll and was lost in a platform outage", msg.event_id
            )
            await self.s.state.move_reply(msg.event_id, "retry", "sent")
            return
        await self.s.state.move_reply(msg.event_id, "retry", "sending")
        await self.deliver(msg, out)

    # ----------------------------------------------------------------- sending

    async def deliver(self, msg: Message, out: Outgoing) -> None:
        """Send a claimed reply and record the outcome in the ledger."""
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
        self._answered(msg)

    def _answered(self, msg: Message) -> None:
        seconds = (self.s.clock.now() - msg.sent_at).total_seconds()
        self.s.telemetry.answered(msg.chat.platform, max(0.0, seconds))


class StreamedClaim:
    """``claim``/``release`` for one streamed reply: the replies chain runs at the claim (before the first
    message), its notes are appended to the final text, and a release runs the drafts' ``on_released``."""

    def __init__(self, delivery: ReplyDelivery, msg: Message) -> None:
        self._delivery = delivery
        self._msg = msg
        self._draft = ReplyDraft(msg, "")

    async def claim(self, payload: str) -> str | None:
        """Claim the reply before a streamed answer's first message. Returns what to append to the final
        text ("" for nothing), or None when it was claimed already."""
        claimed = False
        self._draft = ReplyDraft(self._msg, "")

        async def claim(draft: ReplyDraft) -> None:
            nonlocal claimed
            claimed = await self._delivery.s.state.claim_reply(self._msg.event_id, payload)
            if claimed:
                for hook in draft.on_claimed:
                    await hook()

        await chain(self._delivery._middlewares, claim)(self._draft)
        if not claimed:
            log.info("reply to %s was already claimed; not streaming it", self._msg.event_id)
            return None
        self._delivery._answered(self._msg)  # a streamed answer counts from its first message
        return self._draft.suffix

    async def release(self, appended: str) -> None:
        """Undo ``claim`` (the first send failed): the ordinary reply claims again later."""
        await self._delivery.s.state.release_reply(self._msg.event_id)
        for hook in self._draft.on_released:
            await hook()
