"""Carrying out one relay job: post a copy, edit it, or delete it, through the target group's adapter.

Copies go through the reply ledger (``StateDB.claim_reply`` under the key ``relay:<job key>``) exactly like
replies (``bot.delivery``): claimed before the platform call, marked sent with the copy's id in the same
transaction that maps the copy to its original. After a crash a copy left *sending* is sent again only where
that cannot double it (the platform deduplicates sends, or its journal shows no request went out): exactly
once on such platforms, at most once elsewhere. Copies carrying files are not resent (the files would be
uploaded anew). ``PlatformUnavailable`` leaves the job queued for the worker to retry; a platform's refusal
for good ends the job (logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from bot.delivery import encode_reply, safe_to_resend
from bot.errors import DeliveryError, DeliveryUncertain, PlatformUnavailable
from bot.events import Attachment, ChatRef, Outgoing, OutgoingFile, SentRef
from bot.i18n import Translator
from bot.ports import ChatAdapter
from bot.relay.jobs import Job, RelayJobs
from bot.services import Services

log = logging.getLogger("paibot.relay")


def chat_ref(key: str) -> ChatRef:
    platform, chat_id = key.split(":", 1)
    return ChatRef(platform, chat_id)


def size_text(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class RelaySender:
    def __init__(self, services: Services, jobs: RelayJobs) -> None:
        self.s = services
        self.jobs = jobs

    async def run(self, job: Job) -> None:
        if job.kind in ("copy", "notice") and not self._takes(job.target):
            log.info("%s is not passed on to %s: the bot speaks there only when asked", job.key, job.target)
            await self.jobs.done(job.seq)
            return
        if job.kind == "copy":
            await self._copy(job)
        elif job.kind == "edit":
            await self._edit(job)
        elif job.kind == "delete":
            await self._delete(job)
        elif job.kind == "notice":
            await self._copy_unmapped(job)
        else:
            log.error("unknown relay job kind %r (%s)", job.kind, job.key)
            await self.jobs.done(job.seq)

    def _takes(self, target: str) -> bool:
        """Whether the target group's platform lets the bot post unasked (a platform not connected yet is
        assumed to: the job waits for it)."""
        adapter = self.s.adapters.get(target.split(":", 1)[0])
        return adapter is None or adapter.capabilities.unprompted

    # ----------------------------------------------------------------- copies

    async def _copy(self, job: Job) -> None:
        key = f"relay:{job.key}"
        state = self.s.state
        replied = await state.reply_state(key)
        if replied == "sent":  # a crash came between the ledger and the job (cannot happen: one transaction)
            await self.jobs.done(job.seq)
            return
        adapter = self.s.adapter_for(chat_ref(job.target))  # PlatformUnavailable: the lane waits
        if replied is None:
            out = await self._outgoing(job, adapter)
            if not await state.claim_reply(key, encode_reply(out)):
                log.info("relay copy %s was claimed already", job.key)
                return
        elif replied == "retry":
            out = self._stored(job, await state.reply_payload(key))
            if out is None:
                return await self._lost(job, key, "it held files and its platform was unreachable")
            await state.move_reply(key, "retry", "sending")
        else:  # "sending": a crash interrupted it
            out = self._stored(job, await state.reply_payload(key))
            if out is None or not await safe_to_resend(adapter, out):
                return await self._lost(job, key, "a restart interrupted it and resending could double it")
            log.info("resending the relay copy %s that a restart interrupted", job.key)
        await self._send(job, key, adapter, out)

    async def _send(self, job: Job, key: str, adapter: ChatAdapter, out: Outgoing) -> None:
        state = self.s.state
        try:
            ref = await adapter.send(out)
        except PlatformUnavailable:
            await asyncio.shield(state.move_reply(key, "sending", "retry"))
            raise
        except DeliveryUncertain as exc:
            if adapter.capabilities.idempotent_sends:
                raise PlatformUnavailable(str(exc)) from exc  # still "sending": the resend is deduplicated
            return await self._lost(job, key, f"it may not have arrived ({exc})")
        except DeliveryError as exc:
            return await self._lost(job, key, f"the platform refused it ({exc})")
        except BaseException:
            await asyncio.shield(state.release_reply(key))
            raise
        ids = [ref.message_id, *(i for i in ref.part_ids if i != ref.message_id)]
        await self.jobs.copied(job, key, ids, ref.url, own=bool(job.payload.get("own")))

    async def _lost(self, job: Job, key: str, why: str) -> None:
        log.warning("the copy of %s in %s is not passed on: %s", job.origin_id, job.target, why)
        await self.s.state.move_reply(key, "sending", "sent")
        await self.s.state.move_reply(key, "retry", "sent")
        await self.jobs.done(job.seq)

    def _stored(self, job: Job, payload: str) -> Outgoing | None:
        data = json.loads(payload) if payload else None
        if not data or not data.get("resendable"):
            return None
        return Outgoing(chat=chat_ref(job.target), text=data["text"], reply_to=data["reply_to"],
                        idempotency_key=f"relay:{job.key}")

    async def _outgoing(self, job: Job, adapter: ChatAdapter) -> Outgoing:
        p = job.payload
        target = chat_ref(job.target)
        reply_to = await self._reply_target(job.target, p.get("reply"))
        text = str(p.get("text") or "")
        files: list[OutgoingFile] = []
        notes: list[str] = []
        t: Translator | None = None
        for raw in p.get("files") or ():
            att = Attachment(**raw)
            got = await self._fetch(job, att, adapter)
            if got is not None:
                files.append(OutgoingFile(att.name, att.mime, got))
                continue
            t = t or await self.s.translator(job.target)
            link = str(p.get("origin_url") or "")
            size = size_text(att.size) if att.size else ""
            if link:
                notes.append(t._("📎 {name} {size} could not be passed on here; it is at {link}",
                                 name=att.name, size=size, link=link))
            else:
                notes.append(t._("📎 {name} {size} could not be passed on here", name=att.name, size=size))
        if notes:
            text = "\n".join([text, *notes]) if text.strip() else "\n".join([p.get("prefix", "").rstrip(), *notes])
        return Outgoing(chat=target, text=text, reply_to=reply_to, files=tuple(files),
                        idempotency_key=f"relay:{job.key}")

    async def _fetch(self, job: Job, att: Attachment, target: ChatAdapter) -> bytes | None:
        """The file's bytes when the target takes files of its size, else None (it is linked instead)."""
        limit = target.capabilities.max_file_bytes or self.s.settings.limits.max_attachment_bytes
        limit = min(limit, self.s.settings.limits.max_attachment_bytes)
        if not target.capabilities.files or (att.size and att.size > limit):
            return None
        origin = self.s.adapters.get(job.origin_chat.split(":", 1)[0])
        fetch = getattr(origin, "fetch_attachment", None)
        if fetch is None:
            return None
        try:
            return bytes(await fetch(att, limit))
        except DeliveryError as exc:  # too large after all, gone, or the origin is down: link it
            log.info("could not fetch %s to pass it on: %s", att.name, exc)
            return None

    async def _reply_target(self, target: str, reply: Any) -> str | None:
        """The message in ``target`` that stands for the replied original: itself or its copy there."""
        if not reply:
            return None
        origin_chat, origin_id = str(reply[0]), str(reply[1])
        if origin_chat == target:
            return origin_id
        copy = (await self.jobs.copies(origin_chat, origin_id)).get(target)
        return copy.message_id if copy is not None else None

    # ----------------------------------------------------------------- edits and deletions

    async def _edit(self, job: Job) -> None:
        copy = (await self.jobs.copies(job.origin_chat, job.origin_id)).get(job.target)
        if copy is None:
            await self.jobs.done(job.seq)
            return
        adapter = self.s.adapter_for(chat_ref(job.target))
        text = str(job.payload.get("text") or "")
        if adapter.capabilities.edit:
            try:
                await adapter.edit(SentRef(chat_ref(job.target), copy.message_id), text)
            except PlatformUnavailable:
                raise
            except DeliveryError as exc:
                log.warning("could not edit the copy of %s in %s: %s", job.origin_id, job.target, exc)
            await self.jobs.done(job.seq)
            return
        # A platform without edits reads the new text as a reply to the copy.
        notice = Job(job.seq, job.key, job.target, "copy", job.origin_chat, job.origin_id, job.author,
                     {**job.payload, "text": f"✏️ {text}", "reply": [job.target, copy.message_id]})
        await self._copy_unmapped(notice)

    async def _copy_unmapped(self, job: Job) -> None:
        """Post a message that stands for no original (an edit notice, a notice to a group): at most once."""
        key = f"relay:{job.key}"
        adapter = self.s.adapter_for(chat_ref(job.target))
        if await self.s.state.reply_state(key) is not None:
            await self.jobs.done(job.seq)  # at most once: an edit notice is not worth a duplicate
            return
        out = await self._outgoing(job, adapter)
        if not await self.s.state.claim_reply(key, encode_reply(out)):
            return
        try:
            await adapter.send(out)
        except PlatformUnavailable:
            await asyncio.shield(self.s.state.release_reply(key))
            raise
        except DeliveryError as exc:
            log.warning("could not post %s in %s: %s", job.key, job.target, exc)
        await self.s.state.move_reply(key, "sending", "sent")
        await self.jobs.done(job.seq)

    async def _delete(self, job: Job) -> None:
        copy = (await self.jobs.copies(job.origin_chat, job.origin_id)).get(job.target)
        if copy is None:
            await self.jobs.done(job.seq)
            return
        adapter = self.s.adapter_for(chat_ref(job.target))
        parts = await self.jobs.parts(job.target, copy.message_id)
        ref = SentRef(chat_ref(job.target), copy.message_id, part_ids=tuple(parts))
        delete = getattr(adapter, "delete", None)
        try:
            if delete is not None:
                await delete(ref)
            elif adapter.capabilities.edit:
                t = await self.s.translator(job.target)
                await adapter.edit(ref, copy.prefix + t._("(deleted)"))
        except PlatformUnavailable:
            raise
        except DeliveryError as exc:
            log.warning("could not delete the copy of %s in %s: %s", job.origin_id, job.target, exc)
        await self.jobs.uncopied(job, parts)
