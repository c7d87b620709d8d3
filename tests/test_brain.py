"""The brain's contract: tool loop, retries, fallbacks, trimming, accounting, and no provider text leaking."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from bot.brain import APOLOGY, MAX_TRIMS, Brain, BrainReply, BrainUnavailable, trim_history
from bot.config import LLMSettings
from bot.errors import LLMContextTooLong, LLMError, LLMFatal, LLMRateLimited, LLMRetryable, LLMTimeout
from bot.ports import Completion, Tool, ToolCall, ToolContext, ToolSpec, Usage
from tests.fakes import ManualClock, ScriptedLLM, make_message, tool_call

SETTINGS = LLMSettings(
    model="main-model", fallbacks=("backup-model",), max_retries=2, retry_base_s=1.0, retry_max_s=8.0,
    max_tool_rounds=3, timeout_s=5.0,
)
PROVIDER_SECRET_TEXT = "upstream says: Incorrect API key sk-live-123 at node eu-west-7"


class RecordingLedger:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Usage]] = []
        self.members: list[str] = []

    def add_usage(self, group_key: str, model: str, usage: Usage, member_key: str = "") -> None:
        self.rows.append((group_key, model, usage))
        self.members.append(member_key)

    def tokens_today(self, group_key: str) -> int:
        return sum(u.prompt_tokens + u.completion_tokens for g, _, u in self.rows if g == group_key)


def ctx() -> ToolContext:
    return ToolContext(message=make_message("@Pai hi", mentions_me=True), pai="fake:g1")


def convo(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    system = {"role": "system", "content": "You are Pai."}
    return [system, *extra, {"role": "user", "content": "Alice: @Pai hi"}]


def make_brain(
    script: Any, settings: LLMSettings = SETTINGS, ledger: RecordingLedger | None = None
) -> tuple[Brain, ScriptedLLM, ManualClock]:
    llm = ScriptedLLM(script)
    clock = ManualClock()
    return Brain(llm, settings, clock=clock, ledger=ledger, rng=random.Random(7)), llm, clock


def done(text: str, p: int = 10, c: int = 5, cost: float = 0.0) -> Completion:
    return Completion(text=text, usage=Usage(p, c, cost))


# --------------------------------------------------------------------------- answering


async def test_plain_answer_goes_to_the_configured_model() -> None:
    brain, llm, clock = make_brain([done("hello Alice")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply == BrainReply("hello Alice", Usage(10, 5), "main-model", ())
    assert [c["model"] for c in llm.calls] == ["main-model"]
    assert llm.calls[0]["messages"][-1]["content"] == "Alice: @Pai hi"
    assert clock.slept == []


async def test_caller_messages_are_not_modified() -> None:
    brain, _, _ = make_brain([tool_call("echo", '{"text": "x"}'), done("fine")])
    messages = convo()
    before = json.dumps(messages)
    await brain.respond(messages, [echo_tool()], ctx(), "fake:g1")
    assert json.dumps(messages) == before


# --------------------------------------------------------------------------- retries and fallbacks


async def test_retryable_error_is_retried_after_a_backoff_then_succeeds() -> None:
    brain, llm, clock = make_brain([LLMRetryable("HTTP 500"), LLMTimeout("timed out"), done("back")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply.text == "back" and reply.model == "main-model"
    assert [c["model"] for c in llm.calls] == ["main-model"] * 3
    assert len(clock.slept) == 2
    # jittered exponential: attempt n waits within [base*2^n/2, base*2^n], capped at retry_max_s
    assert 0.5 <= clock.slept[0] <= 1.0 and 1.0 <= clock.slept[1] <= 2.0


async def test_backoff_is_capped_at_retry_max() -> None:
    settings = replace(SETTINGS, max_retries=6, retry_base_s=1.0, retry_max_s=3.0)
    brain, _, clock = make_brain([LLMRetryable("5xx")] * 6 + [done("ok")], settings)
    await brain.respond(convo(), [], ctx(), "fake:g1")
    assert len(clock.slept) == 6 and max(clock.slept) <= 3.0
    assert min(clock.slept[3:]) >= 1.5  # later attempts sit near the cap, not back at the base


async def test_rate_limit_retry_after_is_honoured_exactly() -> None:
    brain, llm, clock = make_brain([LLMRateLimited("429", retry_after=7.0), done("ok")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply.text == "ok"
    assert clock.slept == [7.0]
    assert len(llm.calls) == 2


async def test_retry_after_longer_than_we_wait_moves_to_the_fallback_without_sleeping() -> None:
    brain, llm, clock = make_brain([LLMRateLimited("429", retry_after=3600.0), done("from backup")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert (reply.text, reply.model) == ("from backup", "backup-model")
    assert clock.slept == []
    assert [c["model"] for c in llm.calls] == ["main-model", "backup-model"]


async def test_fallback_is_used_after_the_retries_are_spent() -> None:
    brain, llm, clock = make_brain([LLMRetryable("500")] * 3 + [done("backup answer")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert (reply.text, reply.model) == ("backup answer", "backup-model")
    assert [c["model"] for c in llm.calls] == ["main-model"] * 3 + ["backup-model"]
    assert len(clock.slept) == 2  # max_retries=2: two waits, then give up on the model


async def test_fatal_error_skips_straight_to_the_fallback() -> None:
    brain, llm, clock = make_brain([LLMFatal("401 bad key"), done("backup answer")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply.model == "backup-model"
    assert [c["model"] for c in llm.calls] == ["main-model", "backup-model"]
    assert clock.slept == []


async def test_fallbacks_are_tried_in_order() -> None:
    settings = replace(SETTINGS, fallbacks=("second", "third"), max_retries=0)
    brain, llm, _ = make_brain([LLMFatal("x"), LLMRetryable("y"), done("third speaks")], settings)
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply.model == "third"
    assert [c["model"] for c in llm.calls] == ["main-model", "second", "third"]


async def test_every_model_failing_raises_one_generic_brain_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="paibot.brain")
    last = LLMFatal(PROVIDER_SECRET_TEXT)
    brain, llm, _ = make_brain([LLMRetryable(PROVIDER_SECRET_TEXT)] * 3 + [last])
    with pytest.raises(BrainUnavailable) as info:
        await brain.respond(convo(), [], ctx(), "fake:g1")
    err = info.value
    assert isinstance(err, LLMError)
    assert err.cause is last and err.__cause__ is last
    for shown in (str(err), repr(err), APOLOGY):
        assert "sk-live" not in shown and "eu-west" not in shown and "upstream" not in shown
    assert "eu-west-7" in caplog.text  # the operator still gets the details
    assert len(llm.calls) == 4


async def test_a_language_model_breaking_its_contract_does_not_crash_the_brain() -> None:
    brain, _, _ = make_brain([RuntimeError("bug in a provider client"), done("backup")])
    reply = await brain.respond(convo(), [], ctx(), "fake:g1")
    assert reply.model == "backup-model"


async def test_later_rounds_stay_on_the_model_that_answered() -> None:
    brain, llm, _ = make_brain([LLMFatal("down"), tool_call("echo", '{"text": "a"}'), done("done")])
    reply = await brain.respond(convo(), [echo_tool()], ctx(), "fake:g1")
    assert reply.model == "backup-model"
    assert [c["model"] for c in llm.calls] == ["main-model", "backup-model", "backup-model"]


def test_apology_is_short_and_fixed() -> None:
    assert APOLOGY.startswith("Sorry") and len(APOLOGY) < 200


# --------------------------------------------------------------------------- tools


def echo_tool(seen: list[dict[str, Any]] | None = None) -> Tool:
    async def run(args: dict[str, Any], tctx: ToolContext) -> str:
        if seen is not None:
            seen.append({"args": args, "pai": tctx.pai})
        return f"echo:{args.get('text', '')}"

    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    return Tool(ToolSpec("echo", "Echo the text back", schema), run)


def adder_tool() -> Tool:
    async def run(args: dict[str, Any], tctx: ToolContext) -> str:
        return str(int(args["a"]) + int(args["b"]))

    spec = ToolSpec("add", "Add two integers", {"type": "object", "properties": {"a": {}, "b": {}}})
    return Tool(spec, run)


def tool_results(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in call["messages"] if m["role"] == "tool"]


async def test_tool_round_trip_feeds_the_result_back_after_the_assistant_call() -> None:
    seen: list[dict[str, Any]] = []
    brain, llm, _ = make_brain([tool_call("echo", '{"text": "ping"}', "c-9"), done("the tool said ping")])
    reply = await brain.respond(convo(), [echo_tool(seen)], ctx(), "fake:g1")
    assert reply.text == "the tool said ping"
    assert reply.tool_calls_made == ("echo",)
    assert seen == [{"args": {"text": "ping"}, "pai": "fake:g1"}]
    assert [s.name for s in llm.calls[0]["tools"]] == ["echo"]
    second = llm.calls[1]["messages"]
    assistant, result = second[-2], second[-1]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [
        {"id": "c-9", "type": "function", "function": {"name": "echo", "arguments": '{"text": "ping"}'}}
    ]
    assert result == {"role": "tool", "tool_call_id": "c-9", "name": "echo", "content": "echo:ping"}


async def test_usage_is_summed_over_the_tool_loop() -> None:
    first = Completion("", (ToolCall("c1", "add", '{"a": 2, "b": 3}'),), Usage(100, 10, 0.01))
    brain, _, _ = make_brain([first, done("5", 120, 4, 0.02)])
    reply = await brain.respond(convo(), [adder_tool()], ctx(), "fake:g1")
    assert reply.text == "5"
    assert reply.usage.prompt_tokens == 220 and reply.usage.completion_tokens == 14
    assert reply.usage.cost_usd == pytest.approx(0.03)


async def test_several_calls_in_one_round_each_get_their_result() -> None:
    calls = (ToolCall("a", "add", '{"a": 1, "b": 1}'), ToolCall("b", "add", '{"a": 2, "b": 2}'))
    brain, llm, _ = make_brain([Completion("", calls), done("2 and 4")])
    reply = await brain.respond(convo(), [adder_tool()], ctx(), "fake:g1")
    assert reply.tool_calls_made == ("add", "add")
    assert [(m["tool_call_id"], m["content"]) for m in tool_results(llm.calls[1])] == [("a", "2"), ("b", "4")]


async def test_invalid_json_arguments_become_an_error_result_not_a_crash() -> None:
    brain, llm, _ = make_brain([tool_call("add", '{"a": 1, "b": '), done("sorry, let me retry")])
    reply = await brain.respond(convo(), [adder_tool()], ctx(), "fake:g1")
    assert reply.text == "sorry, let me retry"
    [result] = tool_results(llm.calls[1])
    assert result["content"].startswith("error:") and "JSON" in result["content"]


async def test_non_object_arguments_are_refused() -> None:
    brain, llm, _ = make_brain([tool_call("add", "[1, 2]"), done("ok")])
    await brain.respond(convo(), [adder_tool()], ctx(), "fake:g1")
    assert "JSON object" in tool_results(llm.calls[1])[0]["content"]


async def test_unknown_tool_becomes_an_error_result_naming_the_real_ones() -> None:
    brain, llm, _ = make_brain([tool_call("delete_everything", "{}"), done("I can't do that")])
    reply = await brain.respond(convo(), [echo_tool()], ctx(), "fake:g1")
    assert reply.text == "I can't do that"
    [result] = tool_results(llm.calls[1])
    assert "no tool named 'delete_everything'" in result["content"] and "echo" in result["content"]


async def test_a_raising_tool_gives_a_generic_error_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def explode(args: dict[str, Any], tctx: ToolContext) -> str:
        raise ValueError("db password is hunter2")

    tool = Tool(ToolSpec("boom", "fails", {"type": "object"}), explode)
    brain, llm, _ = make_brain([tool_call("boom", "{}"), done("that failed")])
    with caplog.at_level(logging.ERROR, logger="paibot.brain"):
        reply = await brain.respond(convo(), [tool], ctx(), "fake:g1")
    assert reply.text == "that failed"
    content = tool_results(llm.calls[1])[0]["content"]
    assert content.startswith("error:") and "hunter2" not in content
    assert "hunter2" in caplog.text  # the traceback reaches the log


async def test_a_hanging_tool_times_out_into_an_error_result() -> None:
    async def hang(args: dict[str, Any], tctx: ToolContext) -> str:
        await asyncio.Event().wait()
        return "never"

    tool = Tool(ToolSpec("hang", "never returns", {"type": "object"}), hang)
    brain, llm, _ = make_brain([tool_call("hang", "{}"), done("gave up")], replace(SETTINGS, timeout_s=0.05))
    reply = await brain.respond(convo(), [tool], ctx(), "fake:g1")
    assert reply.text == "gave up"
    assert "timed out" in tool_results(llm.calls[1])[0]["content"]


async def test_tool_loop_is_bounded_then_asks_for_a_final_answer_without_tools() -> None:
    def script(messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec]) -> Completion | str:
        return tool_call("echo", '{"text": "again"}') if tools else "final answer"

    brain, llm, _ = make_brain(script)
    reply = await brain.respond(convo(), [echo_tool()], ctx(), "fake:g1")
    assert reply.text == "final answer"
    assert reply.tool_calls_made == ("echo",) * SETTINGS.max_tool_rounds
    assert len(llm.calls) == SETTINGS.max_tool_rounds + 1
    assert [bool(c["tools"]) for c in llm.calls] == [True] * SETTINGS.max_tool_rounds + [False]
    assert llm.calls[-1]["messages"][-1]["role"] == "system"  # told to answer with what it has


async def test_tool_calls_in_the_final_round_are_ignored() -> None:
    brain, _, _ = make_brain([tool_call("echo", "{}")], replace(SETTINGS, max_tool_rounds=0))
    reply = await brain.respond(convo(), [echo_tool()], ctx(), "fake:g1")
    assert reply.text == "" and reply.tool_calls_made == ()


async def test_with_no_tool_rounds_the_model_is_not_told_its_tools_ran_out() -> None:
    brain, llm, _ = make_brain([done("hi")], replace(SETTINGS, max_tool_rounds=0))
    await brain.respond(convo(), [echo_tool()], ctx(), "fake:g1")
    assert llm.calls[0]["tools"] == [] and llm.calls[0]["messages"] == convo()


# --------------------------------------------------------------------------- context too long


def long_history(n: int) -> list[dict[str, Any]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"old {i}"} for i in range(n)]


async def test_context_too_long_trims_oldest_history_and_keeps_system_and_last_user() -> None:
    brain, llm, clock = make_brain([LLMContextTooLong("too long"), done("short enough")])
    messages = convo(*long_history(8))
    reply = await brain.respond(messages, [], ctx(), "fake:g1")
    assert reply.text == "short enough" and reply.model == "main-model"
    sent = llm.calls[1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are Pai."}
    assert sent[-1] == {"role": "user", "content": "Alice: @Pai hi"}
    assert [m["content"] for m in sent[1:-1]] == [f"old {i}" for i in range(4, 8)]  # oldest half dropped
    assert clock.slept == []


async def test_trimming_is_bounded_then_the_fallback_is_tried() -> None:
    script = [LLMContextTooLong("too long")] * (MAX_TRIMS + 1) + [done("bigger window")]
    brain, llm, _ = make_brain(script)
    reply = await brain.respond(convo(*long_history(200)), [], ctx(), "fake:g1")
    assert reply.model == "backup-model"
    assert [c["model"] for c in llm.calls].count("main-model") == MAX_TRIMS + 1


async def test_nothing_to_trim_fails_over_instead_of_looping() -> None:
    brain, llm, _ = make_brain([LLMContextTooLong("x"), LLMContextTooLong("x")])
    with pytest.raises(BrainUnavailable):
        await brain.respond(convo(), [], ctx(), "fake:g1")
    assert [c["model"] for c in llm.calls] == ["main-model", "backup-model"]


def test_trim_never_orphans_tool_results_and_keeps_every_system_message() -> None:
    history = [
        {"role": "system", "content": "persona"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1"}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r1"},
        {"role": "system", "content": "memory hits"},
        {"role": "user", "content": "u1"},
        {"role": "user", "content": "last"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t2"}]},
        {"role": "tool", "tool_call_id": "t2", "content": "r2"},
    ]
    assert trim_history(history)
    assert [m.get("content") for m in history] == ["persona", "memory hits", "u1", "last", None, "r2"]
    assert trim_history(history)
    assert [m.get("content") for m in history] == ["persona", "memory hits", "last", None, "r2"]
    assert not trim_history(history)


def packed_prompt(n: int) -> list[dict[str, Any]]:
    """The whole group context in one user message, the way the member pipeline renders it."""
    body = [
        "<recalled_from_group_memory>", "Bob (Oct 3): the venue is Hall B", "</recalled_from_group_memory>",
        "<recent_group_messages>", *[f"Carol: line {i}" for i in range(n)], "</recent_group_messages>",
        "Alice asks: @Pai where is the venue?",
    ]
    return [{"role": "system", "content": "You are Pai."}, {"role": "user", "content": "\n".join(body)}]


async def test_a_single_packed_user_message_loses_its_oldest_lines_but_keeps_markers_and_request() -> None:
    brain, llm, _ = make_brain([LLMContextTooLong("too long"), LLMContextTooLong("still"), done("Hall B")])
    reply = await brain.respond(packed_prompt(20), [], ctx(), "fake:g1")
    assert reply.text == "Hall B" and reply.model == "main-model"
    first, last = llm.calls[0]["messages"][1]["content"], llm.calls[-1]["messages"][1]["content"]
    kept = last.split("\n")
    assert len(kept) < len(first.split("\n"))
    assert kept[-1] == "Alice asks: @Pai where is the venue?"
    for marker in ("<recalled_from_group_memory>", "</recalled_from_group_memory>",
                   "<recent_group_messages>", "</recent_group_messages>"):
        assert marker in kept
    assert "Carol: line 19" in kept and "Carol: line 0" not in kept  # newest lines survive
    assert llm.calls[-1]["messages"][0] == {"role": "system", "content": "You are Pai."}


def test_packed_trimming_stops_when_only_markers_and_the_request_are_left() -> None:
    messages = packed_prompt(3)
    steps = 0
    while trim_history(messages):
        steps += 1
        assert steps < 20
    assert messages[1]["content"].split("\n") == [
        "<recalled_from_group_memory>", "</recalled_from_group_memory>", "<recent_group_messages>",
        "</recent_group_messages>", "Alice asks: @Pai where is the venue?",
    ]


# --------------------------------------------------------------------------- accounting


async def test_usage_is_recorded_per_group_for_every_successful_call() -> None:
    ledger = RecordingLedger()
    script = [LLMRetryable("500"), tool_call("echo", "{}"), done("a", 10, 2, 0.5), done("b", 1, 1)]
    brain, _, _ = make_brain(script, ledger=ledger)
    await brain.respond(convo(), [echo_tool()], ctx(), "fake:g1")
    await brain.respond(convo(), [], ctx(), "fake:g2")
    expected = [("fake:g1", "main-model")] * 2 + [("fake:g2", "main-model")]
    assert [(g, m) for g, m, _ in ledger.rows] == expected
    assert ledger.rows[1][2] == Usage(10, 2, 0.5)
    assert ledger.tokens_today("fake:g2") == 2
    assert ledger.members == ["fake:alice"] * 3  # the member whose message was answered pays


async def test_a_failing_ledger_does_not_cost_the_answer() -> None:
    class BrokenLedger(RecordingLedger):
        def add_usage(self, group_key: str, model: str, usage: Usage, member_key: str = "") -> None:
            raise OSError("disk full")

    brain, _, _ = make_brain([done("still here")], ledger=BrokenLedger())
    assert (await brain.respond(convo(), [], ctx(), "fake:g1")).text == "still here"
