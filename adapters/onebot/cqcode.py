"""OneBot v11 messages in both of their formats: segment arrays and CQ-code strings.

A message is a list of segments ``{"type": ..., "data": {...}}``; plain text is the ``text`` segment. The
string format puts text and ``[CQ:type,key=value,...]`` codes in one string, with ``&``, ``[`` and ``]``
escaped in text (``&amp;`` ``&#91;`` ``&#93;``) and additionally ``,`` (``&#44;``) inside code values.
Parsing follows the standard's rule: the function name runs from ``[CQ:`` to the first ``,`` or ``]``;
each ``key=value`` pair splits at its first ``=``. Pure functions; malformed input never raises: a ``[CQ:``
that does not close is text.
"""

from __future__ import annotations

import re
from typing import Any

Segment = dict[str, Any]

_TEXT_ESCAPES = (("&", "&amp;"), ("[", "&#91;"), ("]", "&#93;"))
_VALUE_ESCAPES = (*_TEXT_ESCAPES, (",", "&#44;"))
_UNESCAPE = re.compile(r"&(amp|#91|#93|#44);")
_UNESCAPED = {"amp": "&", "#91": "[", "#93": "]", "#44": ","}
_CODE = re.compile(r"\[CQ:([^,\[\]]+)((?:,[^\[\]]*)?)\]")


def escape(text: str, *, in_value: bool = False) -> str:
    """Escape plain text (or, with ``in_value``, a CQ-code parameter value)."""
    for raw, esc in _VALUE_ESCAPES if in_value else _TEXT_ESCAPES:
        text = text.replace(raw, esc)
    return text


def unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], text)


def parse(message: str) -> list[Segment]:
    """A CQ-code string as a segment array (adjacent text is one ``text`` segment)."""
    out: list[Segment] = []
    pos = 0
    for m in _CODE.finditer(message):
        if m.start() > pos:
            _add_text(out, unescape(message[pos : m.start()]))
        data: dict[str, str] = {}
        for pair in filter(None, m.group(2)[1:].split(",")):
            key, sep, value = pair.partition("=")
            if sep:
                data[key] = unescape(value)
        out.append({"type": m.group(1), "data": data})
        pos = m.end()
    if pos < len(message):
        _add_text(out, unescape(message[pos:]))
    return out


def _add_text(out: list[Segment], text: str) -> None:
    if not text:
        return
    if out and out[-1]["type"] == "text":
        out[-1] = {"type": "text", "data": {"text": out[-1]["data"]["text"] + text}}
    else:
        out.append({"type": "text", "data": {"text": text}})


def render(segments: list[Segment]) -> str:
    """A segment array as a CQ-code string (the inverse of ``parse`` for well-formed segments)."""
    parts: list[str] = []
    for seg in segments:
        kind = str(seg.get("type", ""))
        data = seg.get("data") or {}
        if kind == "text":
            parts.append(escape(str(data.get("text", ""))))
            continue
        params = "".join(
            f",{k}={escape(_scalar(v), in_value=True)}" for k, v in data.items() if v is not None
        )
        parts.append(f"[CQ:{kind}{params}]")
    return "".join(parts)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalize(message: Any) -> list[Segment]:
    """Whatever an event's ``message`` field holds (a string, a segment array or one segment object; the
    standard allows all three in places) as a clean segment array. Items that are not segments are
    dropped; ``data`` is always a dict."""
    if isinstance(message, str):
        return parse(message)
    if isinstance(message, dict):
        message = [message]
    if not isinstance(message, list):
        return []
    out: list[Segment] = []
    for seg in message:
        if not isinstance(seg, dict) or not isinstance(seg.get("type"), str):
            continue
        data = seg.get("data")
        data = dict(data) if isinstance(data, dict) else {}
        if seg["type"] == "text":
            _add_text(out, str(data.get("text", "")))
        else:
            out.append({"type": seg["type"], "data": data})
    return out
