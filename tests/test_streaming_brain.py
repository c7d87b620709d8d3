"""The brain streams the answer's text to a ``TextSink``: only the final answer stays shown; tool rounds,
failed attempts and fallbacks reset what was shown; a model that cannot stream is called the usual way."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

from bot.brain import Brain, BrainUnavailable
from bot.config import LLMSettings
from bot.errors import LLMFatal, LLMRateLimited
from bot.ports import Completion, StreamingLanguageModel, Tool, ToolCall, ToolContext, ToolSpec, Usage
from tests.fakes import CutStream, ManualClock, ScriptedLLM, make_message, tool_call

SETTINGS = LLMSettings(
    model="main-model", fallbacks=("backup-model",), max_retries=2, retry_base_s=1.0, retry_max_s=8.0,
    max_tool_rounds=3, timeout_s=5.0,
)
ANSWER = "The picnic is on Saturday at the lake pavilion, bring sandwiches."


class RecordingSink:
    """A ``TextSink`` that keeps every call: ("update", text) and ("reset", "")."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail = fail

    async def update(self, text: str) -> None:
        self.events.append(("update", text))
        if self.fail:
            raise RuntimeError("the platform is down")

    async def reset(self) -> None:
        self.events.append(("reset", ""))

    @property
    def shown(self) -> str:
        """What the chat would show now: the last update since the last reset."""
        text = ""
        for kind, value in self.events:
            text = value if kind == "update" else ""
        return text

    def updates(self) -> list[str]:
        return [v for k, v in self.events if k == "update"]


class PlainLLM:
    """A ``LanguageModel`` without streaming (only ``complete``)."""

    def __init__(self, script: Sequence[Any]) -> None:
        self._inner = ScriptedLLM(script)

    async def complete(
        self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (), timeout_s: float = 60.0
    ) -> Completion:
        return await self._inner.complete(model, messages, tools, timeout_s)


def ctx() -> ToolContext:
    return ToolContext(message=make_message("@Pai when is the picnic?", mentions_me=True), pai="fake:g1")


def convo() -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are Pai."}, {"role": "user", "content": "Alice: when?"}]


def brain_with(llm: Any, settings: LLMSettings = SETTINGS) -> tuple[Brain, ManualClock]:
    clock = ManualClock()
    return Brain(llm, settings, clock=clock, rng=random.Random(3)), clock


def lookup_tool(calls: list[dict[str, Any]]) -> Tool:
    async def run(args: dict[str, Any], ctx: ToolContext) -> str:
        calls.append(args)
        return "Saturday, lake pavilion"

    return Tool(ToolSpec("lookup", "look something up", {"type": "object", "properties": {}}), run)


async def test_the_answer_arrives_in_growing_pieces_and_the_reply_is_the_whole_text() -> None:
    llm = ScriptedLLM([ANSWER], chunk_chars=10)
    brain, _ = brain_with(llm)
    sink = RecordingSink()
    reply = await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER
    updates = sink.updates()
    assert len(updates) == -(-len(ANSWER) // 10)  # one update per piece
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(updates))
    assert updates[-1] == ANSWER and sink.shown == ANSWER
    assert ("reset", "") not in sink.events
    assert llm.calls[0]["stream"] is True


async def test_without_a_sink_the_model_is_not_streamed() -> None:
    llm = ScriptedLLM([ANSWER])
    brain, _ = brain_with(llm)
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply.text == ANSWER and "stream" not in llm.calls[0]


async def test_a_model_that_cannot_stream_is_called_the_usual_way_and_the_sink_stays_untouched() -> None:
    llm = PlainLLM([ANSWER])
    assert not isinstance(llm, StreamingLanguageModel)
    assert isinstance(ScriptedLLM(), StreamingLanguageModel)
    brain, _ = brain_with(llm)
    sink = RecordingSink()
    reply = await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER
    assert sink.events == []


async def test_a_tool_round_is_not_shown_and_the_final_answer_is_streamed() -> None:
    preamble = Completion(text="Let me look that up.", tool_calls=(ToolCall("c1", "lookup", "{}"),))
    llm = ScriptedLLM([preamble, ANSWER], chunk_chars=16)
    brain, _ = brain_with(llm)
    sink = RecordingSink()
    ran: list[dict[str, Any]] = []
    reply = await brain.respond(convo(), [lookup_tool(ran)], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER and reply.tool_calls_made == ("lookup",) and ran == [{}]
    # The preamble was shown while it streamed, then reset before the tool ran; the answer followed.
    first_reset = sink.events.index(("reset", ""))
    assert all(v.startswith("Let me") for _, v in sink.events[:first_reset])
    assert [v for _, v in sink.events[first_reset + 1 :]][-1] == ANSWER
    assert sink.events.count(("reset", "")) == 1
    assert sink.shown == ANSWER


async def test_a_silent_tool_round_causes_no_reset() -> None:
    llm = ScriptedLLM([tool_call("lookup", "{}"), ANSWER])
    brain, _ = brain_with(llm)
    sink = RecordingSink()
    reply = await brain.respond(convo(), [lookup_tool([])], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER
    assert ("reset", "") not in sink.events and sink.shown == ANSWER


async def test_a_stream_cut_mid_answer_resets_the_sink_and_the_retry_is_shown_from_scratch() -> None:
    llm = ScriptedLLM([CutStream("The picnic is on Sat"), ANSWER], chunk_chars=6)
    brain, clock = brain_with(llm)
    sink = RecordingSink()
    reply = await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER and reply.model == "main-model"
    reset_at = sink.events.index(("reset", ""))
    assert sink.events[reset_at - 1] == ("update", "The picnic is on Sat")
    after = [v for _, v in sink.events[reset_at + 1 :]]
    assert after[0] == ANSWER[:6] and after[-1] == ANSWER  # the retry starts from an empty text
    assert len(clock.slept) == 1  # one backoff between the attempts
    assert [c["model"] for c in llm.calls] == ["main-model", "main-model"]


async def test_a_fallback_model_after_partial_text_starts_from_scratch() -> None:
    cut = CutStream("Half of an answ", LLMFatal("model was retired mid-answer"))
    llm = ScriptedLLM([cut, "From the backup: Saturday."], chunk_chars=5)
    brain, _ = brain_with(llm)
    sink = RecordingSink()
    reply = await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    assert reply.text == "From the backup: Saturday." and reply.model == "backup-model"
    assert sink.events.count(("reset", "")) == 1
    assert sink.shown == "From the backup: Saturday."


async def test_when_every_model_fails_after_partial_text_the_sink_is_reset_and_the_brain_gives_up() -> None:
    settings = LLMSettings(model="main-model", max_retries=1, retry_base_s=0.1, retry_max_s=0.1)
    llm = ScriptedLLM([CutStream("Sorry I ca"), CutStream("Sorry I can"), "never reached"], chunk_chars=4)
    brain, _ = brain_with(llm, settings)
    sink = RecordingSink()
    try:
        await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    except BrainUnavailable:
        pass
    else:
        raise AssertionError("the brain should have given up")
    assert sink.events[-1] == ("reset", "") and sink.shown == ""
    assert sink.events.count(("reset", "")) == 2


async def test_an_error_before_any_text_causes_no_reset() -> None:
    llm = ScriptedLLM([LLMRateLimited("slow down", retry_after=1.0), ANSWER])
    brain, clock = brain_with(llm)
    sink = RecordingSink()
    reply = await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER and clock.slept == [1.0]
    assert ("reset", "") not in sink.events


async def test_a_failing_sink_does_not_cost_the_answer() -> None:
    llm = ScriptedLLM([ANSWER], chunk_chars=20)
    brain, _ = brain_with(llm)
    sink = RecordingSink(fail=True)
    reply = await brain.respond(convo(), [], ctx(), "fake:g1", on_text=sink)
    assert reply.text == ANSWER
    assert len(llm.calls) == 1  # a sink failure is not a model failure: no retry
    assert sink.updates()[-1] == ANSWER


async def test_usage_of_streamed_calls_is_summed_like_any_other() -> None:
    llm = ScriptedLLM([Completion(text="", tool_calls=(ToolCall("c1", "lookup", "{}"),), usage=Usage(10, 2)),
                       Completion(text=ANSWER, usage=Usage(20, 9))])
    brain, _ = brain_with(llm)
    reply = await brain.respond(convo(), [lookup_tool([])], ctx(), "fake:g1", on_text=RecordingSink())
    assert reply.usage == Usage(30, 11)
