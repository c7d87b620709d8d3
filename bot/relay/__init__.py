"""The relay: in a relayed pai (``bot.pais``), every member message posted in one of its groups is passed on
to the others as the bot's message, ``[TG] Alice: ...``; replies point at the copies on each platform, edits
and deletions follow, files go along within each platform's limits (or as a link to the original).

    member message in a relayed group      -> Relay.message: one copy job per other group (or edit/delete
                                              jobs for copies already made), queued durably
    the bot's answer to a relayed message  -> Relay.answered (a sent hook): copies of the answer, each a
                                              reply to the question's copy
    RelayWorker (bot.relay.worker)         -> RelaySender (bot.relay.sender): through the reply ledger

No loops and nothing twice: copies are the bot's own messages, which are never passed on, and the echo of
a copy (platforms that show the bot its own messages) is not recorded in memory: every message is recorded
once, where it was written. Commands (and what the bot answers to them) stay in their group. Messages of
other bots are not passed on (two bridges would echo each other).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from bot.events import Message, Outgoing, PersonRef, ReplyRef, SentRef
from bot.ports import Erasure
from bot.policy import name_pattern, parse_command
from bot.relay.jobs import Copy, NewJob, RelayJobs
from bot.relay.sender import RelaySender
from bot.relay.worker import RelayWorker
from bot.services import Services

log = logging.getLogger("paibot.relay")

__all__ = ["Relay", "RelayJobs", "RelaySender", "RelayWorker", "copy_prefix"]


def copy_prefix(label: str, name: str) -> str:
    """What a copy starts with: ``[TG] Alice: ``."""
    return f"[{label}] {name}: "


class Relay:
    def __init__(self, services: Services, jobs: RelayJobs, worker: RelayWorker | None = None) -> None:
        self.s = services
        self.jobs = jobs
        self.worker = worker

    @classmethod
    def build(cls, services: Services) -> Relay:
        jobs = RelayJobs(services.state)
        return cls(services, jobs, RelayWorker(jobs, RelaySender(services, jobs), rng=services.rng))

    def relays(self, chat_key: str) -> bool:
        return self.s.pais.relays(chat_key)

    # ----------------------------------------------------------------- inbound

    async def localize(self, msg: Message) -> tuple[Message, str | None]:
        """A reply to a relayed copy reads as a reply to the original: its words (without the copy's prefix)
        and its author (the id stays the local copy's). Returns the message and the original's memory
        record id (None when the message replies to no copy)."""
        if msg.reply_to is None:
            return msg, None
        copy = await self.jobs.copy_of(msg.chat.key, msg.reply_to.message_id)
        if copy is None:
            return msg, None
        text = msg.reply_to.text
        if copy.prefix and text.startswith(copy.prefix):
            text = text[len(copy.prefix) :]
        author = msg.reply_to.author
        if copy.author:
            platform, user_id = copy.author.split(":", 1)
            author = PersonRef(platform, user_id, copy.author_name)
        reply = ReplyRef(msg.reply_to.message_id, text, author)
        origin = f"{copy.origin_chat}#{copy.origin_id}"
        mentions_me = msg.mentions_me
        if copy.author and mentions_me:
            # Several platforms count a reply to the bot's message as addressing it (Matrix, Discord, QQ), and a
            # copy is the bot's message on its platform: a reply to a member's words addresses the bot only
            # when it names the bot.
            s = self.s
            names = (s.name_for(msg.chat.key), s.settings.bot.name, *s.settings.bot.aliases)
            mentions_me = bool(name_pattern(names).search(msg.text))
        return dataclasses.replace(msg, reply_to=reply, mentions_me=mentions_me), origin

    async def message(self, msg: Message) -> None:
        """Queue what a member message of a relayed group means for the other groups."""
        targets = self.s.pais.relay_targets(msg.chat.key)
        if not targets or msg.from_me or msg.author.is_bot or msg.is_direct:
            return
        if parse_command(msg.text, self.s.settings.triggers.command_prefixes) is not None:
            return  # commands (a link code, a join code) are between a member and the bot
        chat = msg.chat.key
        if msg.deleted or msg.edited:
            kind = "delete" if msg.deleted else "edit"
            copied = await self.jobs.targets(chat, msg.id)
            jobs = [NewJob(f"{msg.event_id}>{t}", t, kind, chat, msg.id, msg.author.key,
                           {"text": await self._text(msg, t)} if msg.edited else {})
                    for t in targets if t in copied]
        else:
            reply = await self._reply_origin(msg)
            files = [dataclasses.asdict(a) for a in msg.attachments]
            jobs = []
            for target in targets:
                payload = {
                    "text": await self._text(msg, target), "prefix": await self._prefix(msg, target),
                    "author_name": msg.author.display_name, "reply": reply, "files": files,
                    "origin_url": msg.url,
                }
                key = f"{msg.event_id}>{target}"
                jobs.append(NewJob(key, target, "copy", chat, msg.id, msg.author.key, payload))
        await self._queue(jobs)

    async def _prefix(self, msg: Message, target: str) -> str:
        """``[TG] Alice: `` in the target group's language (``[网页] Alice: ``)."""
        t = await self.s.translator(target)
        return copy_prefix(self.s.pais.label(msg.chat.key, t), msg.author.display_name)

    async def _text(self, msg: Message, target: str) -> str:
        text = msg.text
        if msg.attachments and not text.strip():
            text = " ".join(f"📎 {a.name}" for a in msg.attachments)
        return await self._prefix(msg, target) + text

    async def _reply_origin(self, msg: Message) -> list[str] | None:
        """The original a message replies to: the replied message itself, or what it is a copy of."""
        if msg.reply_to is None:
            return None
        copy = await self.jobs.copy_of(msg.chat.key, msg.reply_to.message_id)
        if copy is not None:
            return [copy.origin_chat, copy.origin_id]
        return [msg.chat.key, msg.reply_to.message_id]

    # ----------------------------------------------------------------- the bot's answers

    async def answered(self, out: Outgoing, ref: SentRef) -> None:
        """A sent hook: the bot's reply to a relayed message is passed on too, as a reply to that message's
        copies (a reply to anything else, a command say, stays where it was said)."""
        chat = out.chat.key
        targets = self.s.pais.relay_targets(chat)
        if not targets or not out.reply_to or not out.text.strip():
            return
        if not await self.jobs.targets(chat, out.reply_to):
            return
        payload = {
            "text": out.text, "prefix": "", "author_name": self.s.name_for(chat),
            "reply": [chat, out.reply_to], "files": [], "origin_url": ref.url, "own": True,
        }
        await self._queue([NewJob(f"answer:{chat}#{ref.message_id}>{t}", t, "copy", chat, ref.message_id, "", payload)
                           for t in targets])

    async def _queue(self, jobs: Sequence[NewJob]) -> None:
        if await self.jobs.enqueue(jobs) and self.worker is not None:
            self.worker.kick()

    async def notify(self, chat_key: str, text: str, key: str) -> None:
        """Post ``text`` in a group through the relay queue: durable, in order with the group's copies,
        retried through outages, at most once (``key`` names it uniquely)."""
        await self._queue([NewJob(f"notice:{key}>{chat_key}", chat_key, "notice", chat_key, "", "", {"text": text})])

    # ----------------------------------------------------------------- forgetting

    async def forget(self, identity: str, chats: Sequence[str]) -> int:
        """A member's words leave the other groups: her queued copies are dropped and her copies deleted
        where the platform lets the bot delete its messages. Returns how many copies are being deleted."""
        if not chats:
            return 0
        copies: list[Copy] = await self.jobs.forget_author(identity, chats)
        jobs = [NewJob(f"forget:{c.origin_chat}#{c.origin_id}>{c.chat_key}", c.chat_key, "delete", c.origin_chat,
                       c.origin_id, identity, {}) for c in copies]
        await self._queue(jobs)
        return len(copies)

    # ----------------------------------------------------------------- a ContentEraser (bot.ports)

    async def passages(self, erasure: Erasure) -> Sequence[str]:
        """Nothing of its own: copies repeat the originals, whose stores (the memory, the inbox) name them."""
        return []

    async def erase(self, erasure: Erasure) -> dict[str, int]:
        """``/forget-me`` and ``paibot memory forget`` (through ``bot.erasure.Forgetter``): the copies of the
        member's messages (``author_id``, an id of the platform of ``chat_keys``), or of the messages named,
        leave the pai's other groups: queued ones are dropped, posted ones deleted where the platform lets
        the bot delete its messages (else marked deleted). Retention (``before``) leaves copies to their
        platforms' own retention; the map rows expire on their own (``relay_copies``, 180 days)."""
        if not erasure.chat_keys:
            return {}
        n = 0
        if erasure.author_id is not None:
            platform = erasure.chat_keys[0].split(":", 1)[0]
            n += await self.forget(f"{platform}:{erasure.author_id}", erasure.chat_keys)
        jobs = []
        for chat in erasure.chat_keys:
            for mid in erasure.message_ids:
                jobs += [NewJob(f"forget:{chat}#{mid}>{t}", t, "delete", chat, mid, "", {})
                         for t in await self.jobs.targets(chat, mid)]
        await self._queue(jobs)
        n += len(jobs)
        return {"relayed copies": n} if n else {}

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.jobs.prune()
        if self.worker is not None:
            self.worker.start()

    async def stop(self, grace_s: float = 10.0) -> None:
        if self.worker is not None:
            await self.worker.stop(grace_s)

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()
