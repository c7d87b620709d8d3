"""Text rules of the Telegram Bot API, kept free of I/O so they can be tested exhaustively.

Telegram measures text in UTF-16 code units: message length limits (4096 for text, 1024 for captions) and
entity offsets both count a character outside the Basic Multilingual Plane (most emoji, rare CJK) as two.
Python strings count code points, so every offset and limit here goes through these helpers.
"""

from __future__ import annotations

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
POLL_QUESTION_LIMIT = 300
POLL_OPTION_LIMIT = 100

# Where a long text may be cut, best first. A cut is only taken if it keeps at least this share of a
# full part, so one early blank line does not turn a long answer into a dozen tiny messages.
_BOUNDARIES = ("\n\n", "\n", ". ", "。", "! ", "? ", " ")
_MIN_FILL = 0.5


def utf16_len(text: str) -> int:
    """Length of ``text`` as Telegram counts it (UTF-16 code units)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def utf16_slice(text: str, offset: int, length: int) -> str:
    """The substring at a UTF-16 ``offset``/``length`` (how Telegram's ``MessageEntity`` addresses text).

    Returns "" when the range lies outside the text instead of raising: entities come from the network.
    """
    if offset < 0 or length <= 0:
        return ""
    units = text.encode("utf-16-le")
    if (offset + length) * 2 > len(units):
        return ""
    return units[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def _prefix_within(text: str, limit: int) -> int:
    """The largest code-point index ``i`` with ``utf16_len(text[:i]) <= limit`` (never splits a pair)."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return i
    return len(text)


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units, cutting at a paragraph, line, sentence
    or word boundary when one exists in the back half of a part, else hard at the limit.

    Whitespace at a cut is dropped (Telegram strips it anyway) and parts that would be empty are omitted,
    so ``split_text("   ")`` is ``[]``. Everything else of the text is preserved in order.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        hard = _prefix_within(rest, limit)
        cut = hard
        window = rest[:hard]
        for sep in _BOUNDARIES:
            pos = window.rfind(sep)
            if pos >= 0 and utf16_len(window[: pos + len(sep)]) >= limit * _MIN_FILL:
                cut = pos + len(sep)
                break
        head = rest[:cut].rstrip()
        if not head:  # a run of whitespace longer than the window: skip it
            rest = rest[cut:].lstrip()
            continue
        parts.append(head)
        rest = rest[cut:].lstrip()
    return parts


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut to ``limit`` UTF-16 units, ending with ``ellipsis`` when something was cut."""
    if utf16_len(text) <= limit:
        return text
    return text[: _prefix_within(text, limit - utf16_len(ellipsis))].rstrip() + ellipsis


_MDV2_SPECIAL = set("_*[]()~`>#+-=|{}.!\\")


def escape_markdown_v2(text: str) -> str:
    """Escape every character MarkdownV2 reserves, so ``text`` renders literally with ``parse_mode=MarkdownV2``.

    The adapter sends plain text; this exists for callers that build formatted messages around untrusted
    text (and for the fake server's parser tests)."""
    return "".join("\\" + ch if ch in _MDV2_SPECIAL else ch for ch in text)


def message_link(chat_id: int, message_id: int, username: str | None = None, thread_id: int | None = None) -> str:
    """The ``t.me`` link of a message, or "" where Telegram has none (private chats, basic groups).

    Public chats link by username; private supergroups and channels (ids ``-100<n>``) by ``t.me/c/<n>``.
    """
    if username:
        return f"https://t.me/{username}/{message_id}"
    text = str(chat_id)
    if not text.startswith("-100") or len(text) <= 4:
        return ""
    if thread_id:
        return f"https://t.me/c/{text[4:]}/{thread_id}/{message_id}"
    return f"https://t.me/c/{text[4:]}/{message_id}"
