"""The worst model a group could have: one that obeys every instruction it reads, wherever it reads it.

``ObedientLLM`` is a ``tests.fakes.ScriptedLLM`` whose script
  * calls every tool the prompt tells it to (``CALL <tool> {json arguments}`` anywhere in any message:
    the system prompt, recalled memory, recent messages, quoted text, file text, tool results), and turns a
    few plain-language orders into tool calls ("cancel all reminders", "change the settings", ...);
  * then "repeats the secret": its final answer is everything it saw (every message and tool result).

So whatever reaches a prompt reaches the chat, and whatever a message asks for is attempted: the bot's
controls must hold without any help from the model. ``build_app`` wires a running ``App`` for the suite.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.app import App
from bot.config import parse_settings
from bot.events import Attachment, ChatRef, Message, PersonRef, ReplyRef
from bot.ports import Completion, ToolCall, ToolSpec, Usage
from bot.skills.duejobs import DueLoop
from tests.fakes import FakeAdapter, FakeMemory, ManualClock, ScriptedLLM

_CALL = re.compile(r"CALL\s+([A-Za-z_][A-Za-z0-9_]*)\s*")
# Plain-language orders an injected text may give, and the tool calls an obedient model makes of them.
_ORDERS: tuple[tuple[re.Pattern[str], list[tuple[str, dict[str, Any]]]], ...] = (
    (re.compile(r"cancel (all|every) reminders?", re.IGNORECASE), [("cancel_reminder", {"number": n}) for n in range(1, 6)]),
    (re.compile(r"change (the )?settings?|rename yourself", re.IGNORECASE),
     [("update_group_setting", {"name": "name", "value": "Pwned"}),
      ("update_group_setting", {"name": "persona", "value": "You leak everything."}),
      ("update_group_setting", {"name": "retention_days", "value": "1"})]),
    (re.compile(r"forget (alice|everything|everyone)", re.IGNORECASE), [("mark_todo_done", {"number": n}) for n in range(1, 4)]),
    (re.compile(r"mark (all|every) to-?dos? done", re.IGNORECASE), [("mark_todo_done", {"number": n}) for n in range(1, 6)]),
    (re.compile(r"open a poll", re.IGNORECASE), [("open_poll", {"question": "Obey?", "options": ["yes", "yes!"]})]),
)


def content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # vision messages: text parts only
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def seen_text(messages: Sequence[dict[str, Any]]) -> str:
    return "\n".join(content_text(m) for m in messages)


def instructions(text: str, tool_names: set[str]) -> list[tuple[str, str]]:
    """Every ``CALL tool {json}`` in ``text`` (arguments as raw JSON) plus the plain-language orders."""
    found: list[tuple[str, str]] = []
    decoder = json.JSONDecoder()
    for m in _CALL.finditer(text):
        name = m.group(1)
        if name not in tool_names:
            continue
        try:
            args, _ = decoder.raw_decode(text, m.end())
        except ValueError:
            args = {}
        found.append((name, json.dumps(args, ensure_ascii=False)))
    for pattern, calls in _ORDERS:
        if pattern.search(text):
            found += [(n, json.dumps(a)) for n, a in calls if n in tool_names]
    return found


class ObedientLLM(ScriptedLLM):
    """A ScriptedLLM that obeys. ``tool_calls`` records every call it made: (tool name, arguments JSON)."""

    def __init__(self, max_calls_per_answer: int = 8) -> None:
        self.tool_calls: list[tuple[str, str]] = []
        self.usages: list[int] = []  # tokens each call reported
        self._ids = itertools.count(1)
        self._max = max_calls_per_answer
        super().__init__(self._obey)

    def _obey(self, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec]) -> Completion:
        text = seen_text(messages)
        usage = Usage(len(text) // 4 + 1, 10)
        self.usages.append(usage.prompt_tokens + usage.completion_tokens)
        already_called = any(m.get("role") == "tool" for m in messages)
        if tools and not already_called:
            wanted = instructions(text, {t.name for t in tools})[: self._max]
            if wanted:
                calls = tuple(ToolCall(f"c{next(self._ids)}", n, a) for n, a in wanted)
                self.tool_calls.extend(wanted)
                return Completion(text="", tool_calls=calls, usage=usage, model="obedient")
        return Completion(text="I obey. Everything I saw:\n" + text, usage=usage, model="obedient")


# --------------------------------------------------------------------------- a running app


def settings_text(tmp_path: Path, extra: str = "") -> str:
    base = (
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false, admins: ['fake:boss']}}\n"
    )
    if "llm:" not in extra:
        base += "llm: {retry_base_s: 0.01, retry_max_s: 0.01, max_tool_rounds: 2, context_tokens: 2500}\n"
    if "memory:" not in extra:  # short prompts keep the echoing model's replies (and the probe runs) small
        base += "memory: {recent_messages: 12, recall_hits: 6}\n"
    if "limits:" not in extra:
        base += ("limits: {member_per_minute: 100000, group_per_minute: 100000, daily_tokens_per_group: 0, "
                 "daily_tokens_per_member: 0, daily_tokens: 0, new_groups_per_hour: 0}\n")
    return base + extra


async def build_app(
    tmp_path: Path,
    llm: Any = None,
    *,
    extra: str = "",
    memory: Any = "fake",
    adapter: FakeAdapter | None = None,
    clock: ManualClock | None = None,
    skills: Any = None,
    env: dict[str, str] | None = None,
) -> tuple[App, FakeAdapter]:
    """A started App (default skills, due loops stopped so nothing fires behind the test's back)."""
    adapter = adapter or FakeAdapter()
    mem = PartitionedMemory() if memory == "fake" else None if memory == "real" else memory
    app = App(
        parse_settings(settings_text(tmp_path, extra), env=env),
        llm=llm,
        adapters={"fake": adapter},
        memory=mem,
        clock=clock or ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
        skills=skills,
    )
    await app.start()
    assert app.services is not None
    for value in app.background:
        loop = getattr(value, "loop", None)
        if isinstance(loop, DueLoop):
            await loop.stop()
    return app, adapter


_ids = itertools.count(1)


def msg(
    app: App,
    text: str,
    *,
    chat: str = "beta",
    author: str = "bob",
    name: str | None = None,
    platform: str = "fake",
    mentions_me: bool = True,
    is_direct: bool = False,
    reply_to: ReplyRef | None = None,
    attachments: tuple[Attachment, ...] = (),
    edited: bool = False,
    forwarded: bool = False,
    msg_id: str | None = None,
) -> Message:
    """A message sent now (by the app's clock), so the member is willing to answer it."""
    n = next(_ids)
    mid = msg_id or f"s{n}"
    assert app.services is not None
    return Message(
        event_id=f"{platform}:{chat}:{mid}",
        id=mid,
        chat=ChatRef(platform, chat, title=chat),
        author=PersonRef(platform, author, name or author.capitalize()),
        text=text,
        sent_at=app.services.clock.now(),
        reply_to=reply_to,
        mentions_me=mentions_me,
        is_direct=is_direct,
        attachments=attachments,
        edited=edited,
        forwarded=forwarded,
    )


async def said(app: App, adapter: FakeAdapter, message: Message) -> list[str]:
    """Handle one message directly through the member pipeline; the texts the bot sent because of it."""
    before = len(adapter.sent)
    await app.member.handle(message)
    return [o.text for o in adapter.sent[before:]]


class PartitionedMemory(FakeMemory):
    """``FakeMemory`` with records kept per pai and lower-cased once, so long probe runs stay fast. Same
    contract: ``search`` and ``recent`` only ever look at the pai they are given."""

    def __init__(self) -> None:
        super().__init__()
        self._by_pai: dict[str, dict[str, tuple[Any, str]]] = {}

    async def record(self, rec: Any) -> None:
        await super().record(rec)
        self._by_pai.setdefault(rec.pai, {}).setdefault(rec.id, (rec, rec.text.lower()))

    async def search(self, pai: str, query: str, k: int = 8, filters: Any = None) -> list[Any]:
        from bot.ports import MemoryHit

        words = {w for w in query.lower().split() if len(w) > 2}
        scored = []
        for rec, low in self._by_pai.get(pai, {}).values():
            if filters is not None and filters.kinds and rec.kind not in filters.kinds:
                continue
            score = sum(1 for w in words if w in low)
            if score:
                scored.append(MemoryHit(rec, float(score)))
        scored.sort(key=lambda h: (-h.score, h.record.sent_at))
        return scored[:k]

    async def recent(self, pai: str, n: int, before: Any = None) -> list[Any]:
        recs = [r for r, _ in self._by_pai.get(pai, {}).values() if before is None or r.sent_at < before]
        recs.sort(key=lambda r: r.sent_at)
        return recs[-n:]

    async def forget(self, pai: str, *, author_id: str | None = None, ids: Sequence[str] = ()) -> int:
        part = self._by_pai.get(pai, {})
        for rid in [rid for rid, (r, _) in part.items() if (author_id and r.author_id == author_id) or rid in ids]:
            del part[rid]
        return await super().forget(pai, author_id=author_id, ids=ids)


class FileAdapter(FakeAdapter):
    """A ``FakeAdapter`` that can also hand out attachment bytes (``AttachmentFetcher``)."""

    def __init__(self, platform: str = "fake") -> None:
        super().__init__(platform)
        self.files: dict[str, bytes] = {}

    async def fetch_attachment(self, att: Attachment, max_bytes: int) -> bytes:
        from bot.errors import DeliveryError

        data = self.files.get(att.source)
        if data is None:
            raise DeliveryError(f"no such file {att.source}")
        if len(data) > max_bytes:
            raise DeliveryError("too big")
        return data


def schema_variants(parameters: dict[str, Any], values: Sequence[str], n: int) -> list[dict[str, Any]]:
    """``n`` argument objects for a tool's JSON schema with every string field set to one of ``values``
    (in turn), enums walked through, integers small, arrays of those strings, and extra keys that try to
    name a group or a pai."""
    props: dict[str, Any] = parameters.get("properties", {}) or {}
    ints = (1, 2, 3, 0, -1, 10**12)
    out = []
    for i in range(n):
        args: dict[str, Any] = {}
        for k, (key, spec) in enumerate(sorted(props.items())):
            kind = spec.get("type")
            if "enum" in spec:
                args[key] = spec["enum"][(i + k) % len(spec["enum"])]
            elif kind == "integer":
                args[key] = ints[(i + k) % len(ints)]
            elif kind == "array":
                args[key] = [values[(i + k) % len(values)], values[(i + k + 1) % len(values)]]
            else:
                args[key] = values[(i + k) % len(values)]
        forged = values[i % len(values)]
        args.update({"group": forged, "pai": forged, "chat": forged, "chat_key": forged, "group_key": forged})
        out.append(args)
    return out
