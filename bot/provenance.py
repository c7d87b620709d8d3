"""Where the lines of a prompt come from, when a pai spans several groups (``bot.context.Sources``).

Labels name each line's group (``TG``, ``MX · Team``, from the adapter plugins' short names); a line's link
is its relayed copy's in the group where the question was asked, when the relay made one there (a member on
Matrix can open a matrix.to link, not a Telegram one), else the original's; and accounts that members
linked (``bot.people``) are named as one person, only when both appear among the lines the group sees.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.context import Sources
from bot.ports import MemoryRecord
from bot.services import Services


async def sources_for(s: Services, chat_key: str, pai: str, records: Sequence[MemoryRecord]) -> Sources | None:
    """The ``Sources`` of a prompt in ``chat_key`` over ``records``; None when its pai is one group."""
    directory = s.pais
    joined = directory.by_scope(pai)
    if joined is None or len(joined.chats) < 2:
        return None
    labels = {key: directory.label(key) for key in joined.chats}
    for rec in records:
        labels.setdefault(rec.chat_key, directory.label(rec.chat_key))
    return Sources(labels, await _links(s, chat_key, records), _same_people(s, records))


async def _links(s: Services, chat_key: str, records: Sequence[MemoryRecord]) -> dict[str, str]:
    if s.relay is None:
        return {}
    local = {rec.id: rec.id.removeprefix(f"{rec.chat_key}#") for rec in records if rec.chat_key != chat_key}
    by_origin = {(rec.chat_key, local[rec.id]): rec.id for rec in records if rec.id in local}
    copies = await s.relay.jobs.copies_in(chat_key, list(by_origin))
    return {by_origin[origin]: copy.url for origin, copy in copies.items() if copy.url}


def _same_people(s: Services, records: Sequence[MemoryRecord]) -> tuple[str, ...]:
    if not s.people.linked():
        return ()
    names: dict[str, str] = {}
    for rec in records:  # oldest first: the latest name wins
        if not rec.is_bot:
            names[f"{rec.chat_key.split(':', 1)[0]}:{rec.author_id}"] = rec.author_name
    by_person: dict[str, list[str]] = {}
    for identity in names:
        by_person.setdefault(s.people.person_of(identity), []).append(identity)
    out = []
    for identities in by_person.values():
        if len(identities) < 2:
            continue
        shown = [f"{names[i]} ({s.pais.platform_label(i.split(':', 1)[0])})" for i in sorted(identities)]
        out.append(f"{' and '.join(shown)} are the same person.")
    return tuple(out)
