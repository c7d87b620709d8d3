"""Text rules of the Matrix adapter, pure functions with no I/O.

Outgoing: the model writes Markdown; Matrix wants a plain ``body`` and, optionally, an HTML
``formatted_body``. We never pass model-written HTML through: everything is escaped first, then a tiny safe
subset is rendered (bold, italic, strikethrough, inline code, code blocks, http(s)/mailto links, line
breaks). ``@room`` is neutralised in both, so nothing the model writes can ping a whole room.

Incoming: rich replies carry a *fallback* (``> <@user> quoted`` lines in ``body``, ``<mx-reply>`` in
``formatted_body``) that must not reach the core as if the sender had written it; the configured command
prefixes (``!help``) are normalised to the core's prefix.
"""

from __future__ import annotations

import hashlib
import html
import re
from urllib.parse import quote

ROOM_PING = re.compile(r"@room\b", re.IGNORECASE)
_WORD_JOINER = "\u2060"

_FENCE = re.compile(r"```([A-Za-z0-9_+\-]*)\n?(.*?)```", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:https?://|mailto:)[^\s()<>\"]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"
    r"|(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"
)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.MULTILINE)
_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.DOTALL | re.IGNORECASE)


def neutralise_room_ping(text: str) -> str:
    """``@room`` -> ``@\\u2060room``: reads the same, notifies nobody."""
    return ROOM_PING.sub(lambda m: "@" + _WORD_JOINER + m.group(0)[1:], text)


def markdown_to_html(text: str) -> str:
    """Render a small, safe Markdown subset to HTML. All input HTML is escaped; only our own tags remain."""
    text = text.replace("\x00", "")
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    def fence(m: re.Match[str]) -> str:
        lang, code = m.group(1), m.group(2)
        cls = f' class="language-{lang}"' if lang else ""
        return keep(f"<pre><code{cls}>{html.escape(code.rstrip(chr(10)), quote=False)}</code></pre>")

    text = _FENCE.sub(fence, text)
    text = _INLINE_CODE.sub(lambda m: keep(f"<code>{html.escape(m.group(1), quote=False)}</code>"), text)
    text = html.escape(text, quote=True)
    # Links are matched on escaped text, so the URL is already attribute-safe (no quotes, no angle brackets).
    text = _LINK.sub(lambda m: keep(f'<a href="{m.group(2)}">{m.group(1)}</a>'), text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    text = _STRIKE.sub(lambda m: f"<del>{m.group(1)}</del>", text)
    text = _HEADING.sub(lambda m: f"<strong>{m.group(1)}</strong>", text)
    text = text.replace("\n", "<br/>")
    return re.sub(r"\x00(\d+)\x00", lambda m: stash[int(m.group(1))], text)


def message_content(text: str) -> dict[str, object]:
    """A ``m.text`` content for ``text`` with ``@room`` neutralised and a safe ``formatted_body``."""
    body = neutralise_room_ping(text)
    content: dict[str, object] = {"msgtype": "m.text", "body": body}
    rendered = markdown_to_html(body)
    if rendered != html.escape(body, quote=True).replace("\n", "<br/>"):
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = rendered
    return content


def split_text(text: str, max_chars: int, max_bytes: int) -> list[str]:
    """Split ``text`` into parts of at most ``max_chars`` characters and ``max_bytes`` UTF-8 bytes,
    preferring paragraph, then line, then word boundaries. Never returns an empty list."""
    parts: list[str] = []
    rest = text
    while not _fits(rest, max_chars, max_bytes):
        cut = _cut_point(rest, max_chars, max_bytes)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n ")
        if head:
            parts.append(head)
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def _fits(text: str, max_chars: int, max_bytes: int) -> bool:
    return len(text) <= max_chars and len(text.encode()) <= max_bytes


def _cut_point(text: str, max_chars: int, max_bytes: int) -> int:
    limit = min(len(text), max_chars)
    while limit > 1 and len(text[:limit].encode()) > max_bytes:
        limit = max(1, int(limit * 0.9))
    window = text[:limit]
    for sep in ("\n\n", "\n", " "):
        at = window.rfind(sep)
        if at > limit // 2:
            return at + len(sep)
    return limit


def strip_reply_fallback(body: str) -> str:
    """Remove a rich reply's quoted fallback (leading ``> `` lines and the blank line after them)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


def strip_reply_fallback_html(formatted: str) -> str:
    return _MX_REPLY.sub("", formatted)


def normalise_command(text: str, prefixes: tuple[str, ...], core_prefix: str) -> str:
    """``!remind me`` -> ``/remind me`` when ``!`` is a configured prefix and ``/`` the core's."""
    stripped = text.lstrip()
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and stripped.startswith(prefix) and re.match(r"[A-Za-z]", stripped[len(prefix):]):
            return core_prefix + stripped[len(prefix):]
    return text


def matrix_to(room_id: str, event_id: str | None = None) -> str:
    """A ``https://matrix.to`` permalink (identifiers percent-encoded as the spec asks)."""
    url = "https://matrix.to/#/" + quote(room_id, safe=":")
    if event_id:
        url += "/" + quote(event_id, safe=":")
    return url


def mentions_user_link(text: str, user_id: str) -> bool:
    """Whether ``text`` (body or formatted_body) holds a matrix.to link (a *pill*) to ``user_id``."""
    forms = {user_id, quote(user_id, safe=""), quote(user_id, safe=":")}
    alternatives = "|".join(re.escape(f) for f in sorted(forms))
    return re.search(rf"matrix\.to/#/(?:{alternatives})(?![\w.:%\-])", text, re.IGNORECASE) is not None


def transaction_id(key: str, part: int, content_digest: str) -> str:
    """A transaction id derived from the triggering event, the part number and the content: a retried send
    of the same content reuses it (the homeserver returns the original event); different content never
    does."""
    digest = hashlib.sha256(f"{key}\x00{part}\x00{content_digest}".encode()).hexdigest()[:32]
    return f"paibot.{digest}"
