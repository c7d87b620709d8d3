"""Text rules for QQ through OneBot: splitting long answers and building outgoing messages.

QQ accepts long messages, but long ones are what its risk control flags first, and clients fold them. So
answers are split at a conservative, configurable number of characters (``adapters.onebot.message_limit``),
at a paragraph, line or sentence end (Chinese or Latin punctuation) in the back half of a part when there is
one. Model text only ever travels inside ``text`` segments (or escaped, in the string format), so it can
never turn into a CQ code, an ``@全体成员`` (``at`` of ``all``) or an image.
"""

from __future__ import annotations

from adapters.onebot import cqcode
from adapters.onebot.cqcode import Segment

# Where a long text may be cut, best first; a cut must keep at least half a part.
_BOUNDARIES = ("\n\n", "\n", "。", "！", "？", ". ", "! ", "? ", "；", "; ", "，", ", ", " ")


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, in order, none empty."""
    if limit < 2:
        raise ValueError("limit must be at least 2 characters")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if len(rest) <= limit:
            parts.append(rest)
            break
        window = rest[:limit]
        cut = limit
        for sep in _BOUNDARIES:
            at = window.rfind(sep)
            if at >= 0 and at + len(sep) >= limit // 2:
                cut = at + len(sep)
                break
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    return parts


def outgoing_segments(text: str, reply_to: str | None = None, mention: tuple[str, ...] = ()) -> list[Segment]:
    """One outgoing message: an optional ``reply`` segment quoting ``reply_to``, ``at`` segments for the
    given user ids (never ``all``), then the text."""
    segs: list[Segment] = []
    if reply_to:
        segs.append({"type": "reply", "data": {"id": str(reply_to)}})
    for uid in mention:
        if uid and uid.isdigit():
            segs.append({"type": "at", "data": {"qq": uid}})
    if mention and segs and segs[-1]["type"] == "at":
        text = " " + text  # QQ shows "@name text", not "@nametext"
    if text:
        segs.append({"type": "text", "data": {"text": text}})
    return segs


def wire_message(segments: list[Segment], message_format: str) -> list[Segment] | str:
    """The ``message`` parameter in the configured format (``array``, the default, or ``string``)."""
    return cqcode.render(segments) if message_format == "string" else segments
