"""Text rules for Discord: mass-ping neutralising, splitting at the 2000-character limit, nonces.

Pure functions, no SDK imports, so they are tested directly.
"""

from __future__ import annotations

import hashlib
import re

MAX_MESSAGE_CHARS = 2000
NONCE_CHARS = 25  # Discord rejects longer nonces

_MASS_PING = re.compile(r"@(everyone|here)\b")
_ZWSP = "\u200b"
_FENCE = "```"
# Preferred split points, best first: paragraph, line, sentence end, any whitespace.
_BOUNDARIES = ("\n\n", "\n", ". ", "! ", "? ", "。", "！", "？", " ")


def neutralize_mass_pings(text: str) -> str:
    """Break ``@everyone`` / ``@here`` with a zero-width space so they never read as pings, whatever the
    ``allowed_mentions`` of the request (defence in depth; the request also disables them)."""
    return _MASS_PING.sub(lambda m: f"@{_ZWSP}{m.group(1)}", text)


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, cutting at the best natural boundary in
    the second half of each window (paragraph > line > sentence > word > hard cut). A code block cut in two
    is closed at the end of one part and reopened (with its language tag) at the start of the next.
    Whitespace-only input gives no parts."""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    parts: list[str] = []
    rest = text.strip()
    reopen = ""
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            parts.append(rest)
            break
        budget = limit - len(_FENCE) - 1  # room to close an open fence
        cut = _best_cut(rest, budget)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        fence_lang = _open_fence_language(head)
        if fence_lang is not None:
            head += "\n" + _FENCE
            reopen = _FENCE + fence_lang + "\n"
        else:
            reopen = ""
        parts.append(head)
    return [p for p in parts if p.strip()]


def _best_cut(text: str, budget: int) -> int:
    window = text[:budget]
    for sep in _BOUNDARIES:
        idx = window.rfind(sep)
        if idx >= budget // 2:
            return idx + len(sep)
    return budget


def _open_fence_language(chunk: str) -> str | None:
    """The language tag of a code fence left open at the end of ``chunk`` ("" if untagged), else None."""
    lang: str | None = None
    for line in chunk.split("\n"):
        stripped = line.strip()
        if stripped.startswith(_FENCE):
            lang = None if lang is not None else stripped[len(_FENCE):].strip()
    return lang


def nonce_for(idempotency_key: str, part: int) -> str:
    """A deterministic nonce (<= 25 characters) for part ``part`` of the send keyed by ``idempotency_key``,
    so a retried send of the same reply is deduplicated by Discord (``enforce_nonce``)."""
    digest = hashlib.sha256(f"{idempotency_key}#{part}".encode()).hexdigest()
    return digest[:NONCE_CHARS]


def text_poll(question: str, options: tuple[str, ...]) -> str:
    """A poll written as text, for where a native poll is refused."""
    lines = [f"\U0001f4ca {question}"] + [f"{i}. {opt}" for i, opt in enumerate(options, 1)]
    return "\n".join(lines)
