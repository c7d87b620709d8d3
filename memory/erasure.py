"""Which transcript records an ``Erasure`` (``bot.ports``) forgets.

A member's erasure takes her records in the erasure's chats (messages, file passages, image captions: all
carry her id as author), and then the bot's own records that reply to one of her messages or contain one
of the quoted passages (``Erasure.quotes``: from every store, not only the memory). A message erasure does
the same for the records of those messages (a file's passages and an image's caption share the message's
id as prefix). Retention takes everything of the chats sent before the cutoff.

Record ids are the platform message id, qualified by chat in a pai that bridges several chats
(``<chat key>#<id>``); a file passage adds ``#<n>`` and a caption ``#img``. ``message_key`` undoes that.
Whatever the vector index layout, removal goes through ``Transcript.remove`` (tombstones reach it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.ports import CAPTION, COMMAND, FILE, QUESTION, STATEMENT, Erasure
from memory.rows import ts_of
from memory.transcript import Transcript

BOT_AUTHOR = "@me"  # the author id of the bot's own records (``bot.services.Services.remember_own``)
_KINDS = {STATEMENT: "messages", QUESTION: "messages", COMMAND: "messages", FILE: "file passages",
          CAPTION: "image captions"}  # fmt: skip


def message_key(rec_id: str, chat_key: str, kind: str) -> tuple[str, str]:
    """``(chat key, platform message id)`` of the message a record belongs to."""
    local = rec_id.removeprefix(f"{chat_key}#")
    if kind in (FILE, CAPTION) and "#" in local:
        local = local.rsplit("#", 1)[0]
    return chat_key, local


@dataclass
class Plan:
    seqs: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    passages: list[str] = field(default_factory=list)

    def take(self, seq: int, kind: str) -> None:
        self.seqs.append(seq)
        self.counts[kind] = self.counts.get(kind, 0) + 1


def plan(transcript: Transcript, e: Erasure) -> Plan:
    """The records ``e`` forgets (read only; ``Transcript.remove`` deletes them)."""
    out = Plan()
    if not e.chat_keys:
        return out
    chats = ",".join("?" * len(e.chat_keys))
    conds: list[str] = []
    args: list[object] = []
    if e.author_id is not None:
        conds.append("(author_id = ? AND is_bot = 0)")
        args.append(e.author_id)
    if e.message_ids:
        conds.append(f"id IN ({','.join('?' * len(e.message_ids))})")
        args += e.message_ids
        for mid in e.message_ids:  # qualified ids and what was derived from the messages (file passages, captions)
            conds.append("(id = chat_key || '#' || ? OR id GLOB ? OR id GLOB chat_key || '#' || ?)")
            args += [mid, f"{_glob(mid)}#*", f"{_glob(mid)}#*"]
    if e.before is not None:
        conds.append("ts < ?")
        args.append(ts_of(e.before))
    if not conds:
        return out
    forgotten: set[tuple[str, str]] = set()
    for seq, rid, chat, kind, is_bot, text in transcript.select(
        f"SELECT seq, id, chat_key, kind, is_bot, text FROM records WHERE pai = ? AND chat_key IN ({chats})"
        f" AND ({' OR '.join(conds)})", (e.pai, *e.chat_keys, *args),
    ):  # fmt: skip
        out.take(seq, "bot messages" if is_bot else _KINDS.get(kind, "memory records"))
        if not is_bot:
            out.passages.append(text)
            forgotten.add(message_key(rid, chat, kind))
    if e.author_id is not None or e.message_ids:
        _quoting_bot_records(transcript, e, forgotten, set(out.seqs), out)
    return out


def _quoting_bot_records(transcript: Transcript, e: Erasure, forgotten: set[tuple[str, str]],
                         taken: set[int], out: Plan) -> None:  # fmt: skip
    """The bot's records that reply to a forgotten message or quote a forgotten passage."""
    rows = transcript.select(
        "SELECT seq, chat_key, reply_to_id, text FROM records WHERE pai = ? AND author_id = ?", (e.pai, BOT_AUTHOR)
    )
    for seq, chat, reply_to, text in rows:
        if seq in taken:
            continue
        if (reply_to is not None and (chat, reply_to) in forgotten) or e.quoted_in(text):
            out.take(seq, "bot messages")


def _glob(text: str) -> str:
    """``text`` as a literal inside a GLOB pattern."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def erase(transcript: Transcript, e: Erasure) -> tuple[dict[str, int], list[str]]:
    """Delete what ``e`` forgets; returns the counts by kind and the removed record ids."""
    p = plan(transcript, e)
    removed = transcript.remove(e.pai, p.seqs) if p.seqs else []
    return p.counts, removed


def passages(transcript: Transcript, e: Erasure) -> Sequence[str]:
    return plan(transcript, e).passages
