"""LiteLLMModel.stream_complete over real HTTP (litellm -> openai SDK -> httpx -> an SSE server on 127.0.0.1):
the text arrives in growing pieces, tool-call deltas are assembled, usage is counted, a cut stream is
retryable, and the brain shows only the final answer."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.brain import Brain
from bot.errors import LLMFatal, LLMRateLimited, LLMRetryable
from bot.providers.litellm_llm import LiteLLMModel
from bot.ports import StreamingLanguageModel, ToolContext, ToolSpec
from tests.fake_openai import FakeOpenAI
from tests.fakes import ManualClock, make_message
from tests.test_llm_litellm import (
    KEY,
    USER,
    loopback_only,  # noqa: F401 - autouse: nothing may resolve beyond loopback
    settings,
)

ANSWER = "Two plus three is five, as every member of this group surely knows."
ADD = ToolSpec("add", "add two numbers", {"type": "object", "properties": {"a": {}, "b": {}}})


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


class Texts:
    """An ``on_text`` callback that keeps what it was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, text: str) -> None:
        self.seen.append(text)


async def test_the_text_arrives_growing_and_the_completion_is_whole(fake: FakeOpenAI) -> None:
    model = LiteLLMModel(settings(fake))
    assert isinstance(model, StreamingLanguageModel)
    fake.reply(ANSWER, prompt_tokens=21, completion_tokens=13)
    texts = Texts()
    comp = await model.stream_complete("openai/fake-main", USER, (), 5.0, texts)
    assert comp.text == ANSWER and comp.tool_calls == () and comp.model == "openai/fake-main"
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (21, 13)  # from the usage chunk
    assert len(texts.seen) > 5 and texts.seen[-1] == ANSWER
    assert all(b.startswith(a) and len(b) > len(a) for a, b in itertools.pairwise(texts.seen))
    request = fake.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] == settings(fake).max_reply_tokens


async def test_tool_calls_come_back_assembled(fake: FakeOpenAI) -> None:
    model = LiteLLMModel(settings(fake))
    fake.tool_calls(("add", '{"a": 2, "b": 3}'), ("add", '{"a": 1, "b": 1}'))
    texts = Texts()
    comp = await model.stream_complete("openai/fake-main", USER, (ADD,), 5.0, texts)
    assert [(c.name, json.loads(c.arguments)) for c in comp.tool_calls] == [
        ("add", {"a": 2, "b": 3}), ("add", {"a": 1, "b": 1})]
    assert all(c.id for c in comp.tool_calls) and comp.text == "" and texts.seen == []
    assert fake.requests[0]["tools"][0]["function"]["name"] == "add"


@pytest.fixture
async def split_tool_server() -> AsyncIterator[str]:
    """An SSE server whose tool call arrives the way real providers send it: name first, the arguments in
    several deltas, a second call interleaved by index, usage in a last chunk without choices."""

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
        return f"data: {json.dumps({**body, **extra})}\n\n".encode()

    def call(index: int, **fn: str) -> dict[str, Any]:
        head = {"id": f"call_{index}", "type": "function"} if "name" in fn else {}
        return {"tool_calls": [{"index": index, **head, "function": fn}]}

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in (
            chunk({"role": "assistant", "content": None}),
            chunk(call(0, name="add", arguments="")),
            chunk(call(0, arguments='{"a": ')),
            chunk(call(1, name="add", arguments='{"a": 10,')),
            chunk(call(0, arguments='2, "b": 3}')),
            chunk(call(1, arguments=' "b": 20}')),
            chunk({}, "tool_calls"),
            chunk(None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}),
        ):
            await resp.write(part)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_tool_call_arguments_split_over_many_deltas_are_joined_by_index(
    fake: FakeOpenAI, split_tool_server: str
) -> None:
    model = LiteLLMModel(settings(fake, api_base=split_tool_server))
    comp = await model.stream_complete("openai/fake-main", USER, (ADD,), 5.0, Texts())
    assert [(c.id, c.name, json.loads(c.arguments)) for c in comp.tool_calls] == [
        ("call_0", "add", {"a": 2, "b": 3}), ("call_1", "add", {"a": 10, "b": 20})]
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (30, 12)


async def test_a_stream_cut_mid_answer_is_retryable_after_the_partial_text(fake: FakeOpenAI) -> None:
    model = LiteLLMModel(settings(fake))
    fake.cut_stream("Two plus three is fi")
    texts = Texts()
    with pytest.raises(LLMRetryable) as info:
        await model.stream_complete("openai/fake-main", USER, (), 5.0, texts)
    assert texts.seen[-1] == "Two plus three is fi"
    assert KEY not in str(info.value)


async def test_http_errors_before_the_stream_are_translated_like_calls_without_it(fake: FakeOpenAI) -> None:
    model = LiteLLMModel(settings(fake))
    fake.rate_limit(retry_after=3).unauthorized()
    with pytest.raises(LLMRateLimited) as limited:
        await model.stream_complete("openai/fake-main", USER, (), 5.0, Texts())
    assert limited.value.retry_after == 3.0
    with pytest.raises(LLMFatal) as fatal:
        await model.stream_complete("openai/fake-main", USER, (), 5.0, Texts())
    assert KEY not in str(fatal.value)


async def test_an_on_text_failure_propagates_untranslated(fake: FakeOpenAI) -> None:
    model = LiteLLMModel(settings(fake))
    fake.reply(ANSWER)

    async def broken(text: str) -> None:
        raise KeyError("sink bug")

    with pytest.raises(KeyError):
        await model.stream_complete("openai/fake-main", USER, (), 5.0, broken)


async def test_the_brain_retries_a_cut_stream_and_shows_only_the_whole_answer(fake: FakeOpenAI) -> None:
    s = settings(fake)
    clock = ManualClock()
    brain = Brain(LiteLLMModel(s), s, clock=clock, rng=random.Random(1))
    fake.cut_stream("Two plus thr").reply(ANSWER)

    class Sink:
        def __init__(self) -> None:
            self.events: list[str] = []

        async def update(self, text: str) -> None:
            self.events.append(text)

        async def reset(self) -> None:
            self.events.append("<reset>")

    sink = Sink()
    ctx = ToolContext(message=make_message("@Pai what is 2+3?", mentions_me=True), pai="fake:g1")
    reply = await brain.respond(USER, [], ctx, "fake:g1", on_text=sink)
    assert reply.text == ANSWER
    assert sink.events.count("<reset>") == 1
    cut_at = sink.events.index("<reset>")
    assert sink.events[cut_at - 1] == "Two plus thr" and sink.events[-1] == ANSWER
    assert len(fake.requests) == 2 and all(r["stream"] for r in fake.requests)
