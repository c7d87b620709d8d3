"""Catching up on a group's messages that arrived while paibot was not listening.

OneBot has no acknowledgements and no cursor: an implementation pushes each event once, to whoever is
connected at that moment. What was pushed while paibot was down, disconnected, or killed before its inbox
committed it is gone from the live stream. ``get_group_msg_history`` (a go-cqhttp extension that NapCat,
Lagrange and LLOneBot offer) returns a group's recent messages, newest page first; paging goes back with
the oldest message of a page as the next anchor (sent both as ``message_seq``, NapCat's name, and
``message_id``, Lagrange's). Paging stops at the first page reaching back before the group's last committed
message time (its cursor; seconds, so messages of that same second are fetched again and dropped by the
inbox), at ``max_pages``, at the start of the history, or when a page brings nothing new.

Events are handled in arrival order, so everything that arrived before the newest committed message was
committed too: after a gap, every group is fetched back to ``SLACK_S`` before that message (the cursor),
including groups paibot has not heard from yet. ``history`` does the paging and returns the raw messages
oldest first; the adapter converts and commits them (the inbox drops the ones it has by ``event_id``).
What can still be missed is listed in docs/qq.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
CURSOR_KEY = "onebot:last"  # unix time (QQ's clock) of the newest message committed, in any chat
# Events of different chats can reach paibot slightly out of time order: catching up starts this long
# before the newest committed message (what it finds twice, the inbox drops).
SLACK_S = 30.0
# Where a catch-up in progress began (empty once it finished): a catch-up a kill or a failure cut short is
# resumed from there, though live messages moved CURSOR_KEY on meanwhile.
PENDING_KEY = "onebot:catching-up-from"


def _time(msg: dict[str, Any]) -> float:
    t = msg.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0


async def history(
    call: Call, group_id: str, since: float, page_size: int, max_pages: int
) -> list[dict[str, Any]]:
    """The group's messages from ``since`` (unix seconds, inclusive) on, oldest first, as far back as
    ``max_pages`` pages of ``page_size`` reach. Raises what ``call`` raises (an implementation without the
    action answers with ``ActionFailed``)."""
    pages: list[list[dict[str, Any]]] = []
    seen: set[str] = set()
    anchor: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {"group_id": int(group_id), "count": page_size}
        if anchor is not None:
            params["message_seq"] = int(anchor)
            params["message_id"] = int(anchor)
        data = await call("get_group_msg_history", params)
        page = data.get("messages") if isinstance(data, dict) else data
        if not isinstance(page, list):
            break
        items = [m for m in page if isinstance(m, dict) and m.get("message_id") is not None]
        fresh = [m for m in items if str(m["message_id"]) not in seen]
        seen.update(str(m["message_id"]) for m in fresh)
        if not fresh:
            break
        pages.append(fresh)
        oldest = min(fresh, key=_time)
        if _time(oldest) < since or len(items) < page_size:  # reached past the cursor, or the start
            break
        anchor = str(oldest["message_id"])
    # Oldest page first, each page in the implementation's order; a stable sort by time keeps that order
    # among messages of the same second.
    ordered = [m for page in reversed(pages) for m in page]
    return sorted((m for m in ordered if _time(m) >= since), key=_time)
