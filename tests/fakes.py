"""Fakes at the seams: a scripted LLM, a fake adapter, a manual clock and a gated clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.errors import LLMError, LLMRetryable
from bot.events import ChatRef, Message, Outgoing, PersonRef, SentRef
from bot.ports import Capabilities, Completion, IntakeSink, ToolCall, ToolSpec, Usage

@dataclass(frozen=True)
class CutStream:
    """A script item for a streamed call: ``text`` arrives, then the stream breaks with ``error``. A call
    without streaming raises ``error`` at once."""

    text: str
    error: Exception = field(default_factory=lambda: LLMRetryable("stream ended before the answer did"))


Script = Callable[[Sequence[dict[str, Any]], Sequence[ToolSpec]], "Completion | str | Exception | CutStream"]


class ScriptedLLM:
    """A ``LanguageModel`` answering from a script: a list of replies (str, Completion or an exception to
    raise) consumed in order, or a function of the messages. Every call is recorded in ``calls``.

    It also streams (``StreamingLanguageModel``): ``stream_complete`` reports a reply's text in pieces of
    ``chunk_chars`` characters, awaiting ``between_chunks()`` (e.g. advancing a ``ManualClock``) after
    each piece; a ``CutStream`` item streams its text and then raises its error. Streamed calls are
    recorded with ``"stream": True``."""

    def __init__(
        self,
        script: Sequence[Completion | str | Exception | CutStream] | Script = ("ok",),
        *,
        chunk_chars: int = 8,
        between_chunks: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._script = script
        self._i = 0
        self.calls: list[dict[str, Any]] = []
        self.chunk_chars = max(1, chunk_chars)
        self.between_chunks = between_chunks

    async def complete(
        self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (), timeout_s: float = 60.0
    ) -> Completion:
        out = self._next(model, messages, tools, stream=False)
        if isinstance(out, CutStream):
            raise out.error
        return out

    async def stream_complete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[ToolSpec] = (),
        timeout_s: float = 60.0,
        on_text: Callable[[str], Awaitable[None]] | None = None,
    ) -> Completion:
        out = self._next(model, messages, tools, stream=True)
        text = out.text
        for end in range(self.chunk_chars, len(text) + self.chunk_chars, self.chunk_chars):
            if on_text is not None:
                await on_text(text[:end])
            if self.between_chunks is not None:
                await self.between_chunks()
            await asyncio.sleep(0)
        if isinstance(out, CutStream):
            raise out.error
        return out

    def _next(
        self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec], *, stream: bool
    ) -> Completion | CutStream:
        call: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "tools": list(tools)}
        if stream:
            call["stream"] = True
        self.calls.append(call)
        if callable(self._script):
            out = self._script(messages, tools)
        else:
            out = self._script[min(self._i, len(self._script) - 1)]
            self._i += 1
        if isinstance(out, Exception):
            raise out
        if isinstance(out, str):
            return Completion(text=out, usage=Usage(len(str(messages)) // 4, len(out) // 4), model=model)
        return out

    @property
    def prompts(self) -> list[str]:
        """Every call's messages flattened to text, for assertions on what the model saw."""
        return ["\n".join(str(m.get("content", "")) for m in c["messages"]) for c in self.calls]


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> Completion:
    return Completion(text="", tool_calls=(ToolCall(call_id, name, arguments),))


class FakeAdapter:
    """An in-memory platform: ``inject`` delivers a message to the core like a platform would; ``sent``
    holds everything the core sent."""

    name = "fake"

    def __init__(self, platform: str = "fake", capabilities: Capabilities | None = None) -> None:
        self.platform = platform
        self.capabilities = capabilities or Capabilities(max_text_length=4000, edit=True)
        self.sink: IntakeSink | None = None
        self.sent: list[Outgoing] = []
        self.edits: list[tuple[SentRef, str]] = []
        self.typings: list[ChatRef] = []
        self._ids = itertools.count(1)
        self.sent_event = asyncio.Event()
        self.fail_sends: Exception | None = None
        self.send_attempts = 0  # every call of ``send``, failed ones included
        self._attempted = asyncio.Condition()

    async def start(self, sink: IntakeSink) -> None:
        self.sink = sink

    async def until_send_attempts(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``send`` has been called ``n`` times (delivered or failed)."""
        async with self._attempted:
            await asyncio.wait_for(self._attempted.wait_for(lambda: self.send_attempts >= n), timeout)

    async def stop(self) -> None:
        self.sink = None

    async def send(self, out: Outgoing) -> SentRef:
        async with self._attempted:
            self.send_attempts += 1
            self._attempted.notify_all()
        if self.fail_sends is not None:
            raise self.fail_sends
        self.sent.append(out)
        self.sent_event.set()
        return SentRef(out.chat, f"bot-{next(self._ids)}")

    async def edit(self, ref: SentRef, text: str) -> None:
        self.edits.append((ref, text))

    async def typing(self, chat: ChatRef) -> None:
        self.typings.append(chat)

    async def inject(self, msg: Message) -> int:
        assert self.sink is not None, "adapter not started"
        return await self.sink.submit([msg])

    async def wait_sent(self, n: int, timeout: float = 10.0) -> list[Outgoing]:
        async def until() -> None:
            while len(self.sent) < n:
                self.sent_event.clear()
                await self.sent_event.wait()

        await asyncio.wait_for(until(), timeout)
        return self.sent


class FlakyAdapter(FakeAdapter):
    """Fails its first starts as scripted (an exception per attempt), then connects."""

    def __init__(self, *failures: BaseException, platform: str = "fake") -> None:
        super().__init__(platform)
        self.failures = list(failures)
        self.starts = 0
        self.stops = 0

    async def start(self, sink: IntakeSink) -> None:
        self.starts += 1
        if self.failures:
            raise self.failures.pop(0)
        await super().start(sink)

    async def stop(self) -> None:
        self.stops += 1
        await super().stop()


class WatchedAdapter(FlakyAdapter):
    """Also a ``bot.ports.ConnectionWatch``: ``lose(problem)`` ends the running connection."""

    def __init__(self, *failures: BaseException, platform: str = "fake") -> None:
        super().__init__(*failures, platform=platform)
        self._lost: asyncio.Queue[Exception] = asyncio.Queue()

    def lose(self, problem: Exception) -> None:
        self._lost.put_nowait(problem)

    async def connection_lost(self) -> Exception:
        problem = await self._lost.get()
        self.sink = None  # the connection is released
        return problem


_counter = itertools.count(1)


def make_message(
    text: str,
    *,
    chat: str = "g1",
    author: str = "alice",
    name: str | None = None,
    platform: str = "fake",
    mentions_me: bool = False,
    is_direct: bool = False,
    is_bot: bool = False,
    from_me: bool = False,
    reply_to: Any = None,
    sent_at: datetime | None = None,
    msg_id: str | None = None,
) -> Message:
    n = next(_counter)
    mid = msg_id or f"m{n}"
    return Message(
        event_id=f"{platform}:{chat}:{mid}",
        id=mid,
        chat=ChatRef(platform, chat, title=chat),
        author=PersonRef(platform, author, name or author.capitalize(), is_bot=is_bot),
        text=text,
        sent_at=sent_at or datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc) + timedelta(minutes=n),
        reply_to=reply_to,
        mentions_me=mentions_me,
        is_direct=is_direct,
        from_me=from_me,
    )


class RecordingInbox:
    """An in-memory ``IntakeSink`` with the real inbox's semantics: events deduplicated by ``event_id``
    (``events`` by id, ``order`` of ids as committed), the cursor committed together with them, and every
    submit logged in ``submits``. Adapter test kits subclass it to add failures and waiting."""

    def __init__(self) -> None:
        self.events: dict[str, Any] = {}
        self.order: list[str] = []
        self.cursors: dict[str, str] = {}
        self.submits: list[tuple[int, str | None, str | None]] = []

    def commit(self, events: Sequence[Any], cursor_key: str | None, cursor: str | None) -> int:
        new = 0
        for ev in events:
            if ev.event_id not in self.events:
                self.events[ev.event_id] = ev
                self.order.append(ev.event_id)
                new += 1
        if cursor_key is not None and cursor is not None:
            self.cursors[cursor_key] = cursor
        self.submits.append((len(events), cursor_key, cursor))
        return new

    async def submit(self, events: Any, *, cursor_key: str | None = None, cursor: str | None = None) -> int:
        return self.commit(events, cursor_key, cursor)

    async def cursor(self, key: str) -> str | None:
        return self.cursors.get(key)

    async def seen(self, event_id: str) -> bool:
        return event_id in self.events

    def in_order(self) -> list[Any]:
        return [self.events[e] for e in self.order]


class ManualClock:
    """A clock that only moves when told; ``sleep`` advances it instantly."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class GatedClock:
    """Real time for ``now``; every ``sleep`` is recorded and lasts until the test calls ``release()``.

    For backoff loops (``bot.supervisor``): the test waits until the loop is waiting (``sleeping(n)``),
    changes the world (starts the platform), then lets the next attempt happen, without sleeping itself."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self._released = 0
        self._changed = asyncio.Condition()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep(self, seconds: float) -> None:
        async with self._changed:
            self.slept.append(seconds)
            mine = len(self.slept)
            self._changed.notify_all()
            await self._changed.wait_for(lambda: self._released >= mine)

    async def sleeping(self, n: int = 1, timeout: float = 30.0) -> None:
        """Wait until the ``n``-th sleep has begun."""

        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.slept) >= n)

        await asyncio.wait_for(until(), timeout)

    async def release(self) -> None:
        """End every sleep begun so far."""
        async with self._changed:
            self._released = len(self.slept)
            self._changed.notify_all()


class FakeMemory:
    """An in-memory ``MemoryStore`` with naive word-overlap search, for pipeline unit tests."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Any] = {}

    async def record(self, rec: Any) -> None:
        """Kept as given; an unclassified record gets its kind from its text, as the real store does."""
        from dataclasses import replace

        from bot.ports import RECORD_KINDS
        from memory.kinds import KindRules

        if rec.kind not in RECORD_KINDS:
            rec = replace(rec, kind=KindRules(("Pai", "派")).classify(rec.text, rec.is_bot))
        self.records.setdefault((rec.pai, rec.id), rec)

    async def search(self, pai: str, query: str, k: int = 8, filters: Any = None) -> list[Any]:
        """Word overlap over the kinds the contract searches (evidence and questions, unless told)."""
        from bot.ports import EVIDENCE_KINDS, QUESTION, MemoryHit

        kinds = set(filters.kinds) if filters is not None and filters.kinds else {*EVIDENCE_KINDS, QUESTION}
        words = {w for w in query.lower().split() if len(w) > 2}
        scored = []
        for (p, _), rec in self.records.items():
            if p != pai or rec.kind not in kinds:
                continue
            score = sum(1 for w in words if w in rec.text.lower())
            if score:
                scored.append(MemoryHit(rec, float(score)))
        scored.sort(key=lambda h: (-h.score, h.record.sent_at))
        return scored[:k]

    async def recent(self, pai: str, n: int, before: Any = None) -> list[Any]:
        recs = sorted((r for (p, _), r in self.records.items() if p == pai), key=lambda r: r.sent_at)
        return recs[-n:]

    async def forget(self, pai: str, *, author_id: str | None = None, ids: Sequence[str] = ()) -> int:
        doomed = [key for key, r in self.records.items()
                  if key[0] == pai and ((author_id and r.author_id == author_id) or r.id in ids)]
        for key in doomed:
            del self.records[key]
        return len(doomed)

    async def close(self) -> None:
        pass

    def texts(self, pai: str) -> list[str]:
        return [r.text for (p, _), r in sorted(self.records.items(), key=lambda kv: kv[1].sent_at) if p == pai]


__all__ = ["CutStream", "RecordingInbox", "FakeMemory", "ScriptedLLM", "FakeAdapter", "ManualClock", "make_message", "tool_call", "LLMError"]
