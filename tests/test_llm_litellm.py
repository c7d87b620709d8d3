"""LiteLLMModel over real HTTP (litellm -> openai SDK -> httpx -> the fake OpenAI server on 127.0.0.1).

Every provider failure must come out as the right ``bot.errors`` class, with no hidden retries inside
litellm, and nothing may reach beyond loopback.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.brain import Brain, BrainUnavailable
from bot.config import LLMSettings
from bot.errors import LLMContextTooLong, LLMFatal, LLMRateLimited, LLMRetryable, LLMTimeout
from bot.providers.litellm_llm import LiteLLMModel, build_language_model, parse_retry_after, translate_error
from bot.ports import Tool, ToolContext, ToolSpec
from tests.fake_openai import FakeOpenAI, fake_openai  # noqa: F401 - the fixture
from tests.fakes import ManualClock, make_message

KEY = "sk-test-0123456789abcdef"
USER = [
    {"role": "system", "content": "You are Pai."},
    {"role": "user", "content": "Alice: @Pai what is 2+3?"},
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", None}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fail any name lookup beyond loopback (a cost-map download, a stray provider URL)."""
    real = socket.getaddrinfo
    attempts: list[Any] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host not in LOOPBACK:
            attempts.append(host)
            raise socket.gaierror(f"tests may not resolve {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield attempts
    assert attempts == [], f"something tried to reach {attempts}"


def settings(fake: FakeOpenAI, **kw: Any) -> LLMSettings:
    base = LLMSettings(
        model="openai/fake-main", api_base=fake.base_url, api_key=KEY, timeout_s=5.0, max_reply_tokens=123,
        temperature=0.25, max_retries=2, retry_base_s=1.0, retry_max_s=10.0,
    )
    return replace(base, **kw)


async def call(fake: FakeOpenAI, tools: tuple[ToolSpec, ...] = (), **kw: Any):  # type: ignore[no-untyped-def]
    s = settings(fake, **kw)
    return await LiteLLMModel(s).complete(s.model, USER, tools, timeout_s=s.timeout_s)


ADD = ToolSpec(
    "add",
    "Add two integers",
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
)


# --------------------------------------------------------------------------- happy paths


async def test_text_reply_with_usage_and_the_request_the_provider_saw(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply("It is 5.", prompt_tokens=21, completion_tokens=4)
    comp = await call(fake_openai)
    assert comp.text == "It is 5." and comp.tool_calls == ()
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (21, 4)
    assert comp.usage.cost_usd == 0.0  # an unpriced model costs nothing rather than crashing
    assert comp.model == "openai/fake-main"
    [body] = fake_openai.requests
    assert body["model"] == "fake-main"
    assert body["messages"] == USER
    assert body["max_tokens"] == 123 and body["temperature"] == 0.25
    assert "tools" not in body
    assert fake_openai.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_tool_calls_round_trip(fake_openai: FakeOpenAI) -> None:
    fake_openai.tool_calls(("add", '{"a": 2, "b": 3}'))
    model = LiteLLMModel(settings(fake_openai))
    comp = await model.complete("openai/fake-main", USER, (ADD,))
    [tc] = comp.tool_calls
    assert (tc.name, json.loads(tc.arguments)) == ("add", {"a": 2, "b": 3}) and tc.id
    assert fake_openai.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {"name": "add", "description": "Add two integers", "parameters": ADD.parameters},
        }
    ]
    follow_up = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": tc.id, "type": "function", "function": {"name": "add", "arguments": tc.arguments}}]},
        {"role": "tool", "tool_call_id": tc.id, "name": "add", "content": "5"},
    ]
    fake_openai.reply("2+3 is 5")
    comp2 = await model.complete("openai/fake-main", follow_up, (ADD,))
    assert comp2.text == "2+3 is 5"
    sent = fake_openai.requests[1]["messages"]
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == tc.id and sent[-1]["content"] == "5"
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "add"


async def test_api_base_applies_to_fallbacks_of_the_same_provider(fake_openai: FakeOpenAI) -> None:
    model = LiteLLMModel(settings(fake_openai, fallbacks=("openai/fake-small",)))
    comp = await model.complete("openai/fake-small", USER)
    assert comp.text == "ok" and fake_openai.requests[0]["model"] == "fake-small"


def test_no_model_configured_means_no_language_model() -> None:
    assert build_language_model(LLMSettings(model="")) is None
    configured = LLMSettings(model="openai/x", api_base="http://127.0.0.1:9/v1")
    assert isinstance(build_language_model(configured), LiteLLMModel)


# --------------------------------------------------------------------------- failures, each mapped


async def test_http_500_is_retryable_and_litellm_does_not_retry_by_itself(fake_openai: FakeOpenAI) -> None:
    fake_openai.error(500, "internal error")
    with pytest.raises(LLMRetryable) as info:
        await call(fake_openai)
    assert not isinstance(info.value, LLMRateLimited)
    assert isinstance(info.value.__cause__, Exception)  # translated with raise ... from
    assert len(fake_openai.requests) == 1


async def test_http_503_is_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.error(503, "overloaded")
    with pytest.raises(LLMRetryable):
        await call(fake_openai)
    assert len(fake_openai.requests) == 1


async def test_429_is_rate_limited_with_the_providers_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.rate_limit(retry_after=3)
    with pytest.raises(LLMRateLimited) as info:
        await call(fake_openai)
    assert info.value.retry_after == 3.0
    assert len(fake_openai.requests) == 1


async def test_429_without_retry_after_leaves_it_unset(fake_openai: FakeOpenAI) -> None:
    fake_openai.rate_limit(retry_after=None)
    with pytest.raises(LLMRateLimited) as info:
        await call(fake_openai)
    assert info.value.retry_after is None


async def test_a_hanging_provider_times_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.hang(30)
    with pytest.raises(LLMTimeout):
        await call(fake_openai, timeout_s=0.3)
    assert len(fake_openai.requests) == 1


async def test_401_is_fatal_and_the_key_is_scrubbed_from_the_message(fake_openai: FakeOpenAI) -> None:
    fake_openai.error(401, f"Incorrect API key provided: {KEY}")
    with pytest.raises(LLMFatal) as info:
        await call(fake_openai)
    assert KEY not in str(info.value) and "HTTP 401" in str(info.value)


async def test_404_unknown_model_is_fatal(fake_openai: FakeOpenAI) -> None:
    fake_openai.error(404, "The model `fake-main` does not exist")
    with pytest.raises(LLMFatal):
        await call(fake_openai)


async def test_context_length_exceeded_is_context_too_long(fake_openai: FakeOpenAI) -> None:
    fake_openai.context_too_long()
    with pytest.raises(LLMContextTooLong):
        await call(fake_openai)


async def test_a_malformed_body_is_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.malformed()
    with pytest.raises(LLMRetryable):
        await call(fake_openai)


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens there
    s2 = LLMSettings(model="openai/x", api_base=f"http://127.0.0.1:{port}/v1", api_key=KEY, timeout_s=5.0)
    with pytest.raises(LLMRetryable):
        await LiteLLMModel(s2).complete("openai/x", USER)


async def test_the_loopback_guard_catches_a_provider_url(loopback_only: list[Any]) -> None:
    """Proves the autouse guard sees lookups made through litellm (so the other tests' silence means
    something), and that an unresolvable host is a retryable connection error."""
    s = LLMSettings(model="openai/x", api_base="http://provider.invalid/v1", api_key=KEY, timeout_s=5.0)
    with pytest.raises(LLMRetryable):
        await LiteLLMModel(s).complete("openai/x", USER)
    assert "provider.invalid" in loopback_only
    loopback_only.clear()


def test_unexpected_exceptions_are_translated_never_raw() -> None:
    req = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    assert isinstance(translate_error(httpx.ConnectError("refused", request=req)), LLMRetryable)
    assert isinstance(translate_error(httpx.ReadTimeout("slow", request=req)), LLMTimeout)
    assert isinstance(translate_error(TimeoutError()), LLMTimeout)
    assert type(translate_error(KeyError("choices"))) is LLMRetryable
    fatal = LLMFatal("already ours")
    assert translate_error(fatal) is fatal


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": later}, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "-4"}) == 0.0


# --------------------------------------------------------------------------- streaming through the fake


async def test_fake_server_streams_and_cuts_streams_like_a_provider(fake_openai: FakeOpenAI) -> None:
    """The fake's SSE mode, for the streaming work to come: a full stream, then one cut mid-answer."""
    model = LiteLLMModel(settings(fake_openai))
    litellm = model._litellm
    kw = dict(model="openai/fake-main", messages=USER, api_base=fake_openai.base_url, api_key=KEY,
              num_retries=0, max_retries=0, stream=True, timeout=5)
    fake_openai.reply("streamed answer").cut_stream("half an ans")
    stream = await litellm.acompletion(**kw)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "streamed answer"
    with pytest.raises(Exception) as info:
        stream = await litellm.acompletion(**kw)
        _ = [c async for c in stream]
    assert isinstance(translate_error(info.value), LLMRetryable)


# --------------------------------------------------------------------------- with the brain


def brain_for(fake: FakeOpenAI, **kw: Any) -> tuple[Brain, ManualClock]:
    s = settings(fake, **kw)
    clock = ManualClock()
    return Brain(LiteLLMModel(s), s, clock=clock, rng=random.Random(1)), clock


def ctx() -> ToolContext:
    return ToolContext(message=make_message("@Pai what is 2+3?", mentions_me=True), pai="fake:g1")


async def test_brain_end_to_end_a_500_then_the_answer(fake_openai: FakeOpenAI) -> None:
    fake_openai.error(500).reply("It is 5.")
    brain, clock = brain_for(fake_openai)
    reply = await brain.respond(USER, [], ctx(), "fake:g1")
    assert (reply.text, reply.model) == ("It is 5.", "openai/fake-main")
    assert len(fake_openai.requests) == 2 and len(clock.slept) == 1


async def test_brain_end_to_end_tool_loop_and_fallback(fake_openai: FakeOpenAI) -> None:
    async def add(args: dict[str, Any], tctx: ToolContext) -> str:
        return str(args["a"] + args["b"])

    fake_openai.error(401).tool_calls(("add", '{"a": 2, "b": 3}')).reply("2+3 is 5")
    brain, _ = brain_for(fake_openai, fallbacks=("openai/fake-backup",))
    reply = await brain.respond(USER, [Tool(ADD, add)], ctx(), "fake:g1")
    assert (reply.text, reply.model, reply.tool_calls_made) == ("2+3 is 5", "openai/fake-backup", ("add",))
    assert [r["model"] for r in fake_openai.requests] == ["fake-main", "fake-backup", "fake-backup"]
    assert fake_openai.requests[2]["messages"][-1]["content"] == "5"


async def test_brain_end_to_end_context_too_long_then_trimmed(fake_openai: FakeOpenAI) -> None:
    history = [{"role": "user", "content": f"Bob: old message {i}"} for i in range(6)]
    fake_openai.context_too_long().reply("answered with less history")
    brain, _ = brain_for(fake_openai)
    reply = await brain.respond([USER[0], *history, USER[1]], [], ctx(), "fake:g1")
    assert reply.text == "answered with less history"
    assert len(fake_openai.requests[1]["messages"]) < len(fake_openai.requests[0]["messages"])
    assert fake_openai.requests[1]["messages"][-1] == USER[1]


async def test_brain_end_to_end_context_too_long_with_one_packed_user_message(
    fake_openai: FakeOpenAI,
) -> None:
    lines = ["<recent_group_messages>", *[f"Bob: old {i}" for i in range(10)], "</recent_group_messages>"]
    packed = [USER[0], {"role": "user", "content": "\n".join([*lines, "Alice asks: what is 2+3?"])}]
    fake_openai.context_too_long().reply("5")
    brain, _ = brain_for(fake_openai)
    reply = await brain.respond(packed, [], ctx(), "fake:g1")
    assert reply.text == "5"
    sent = fake_openai.requests[1]["messages"][1]["content"]
    assert "Bob: old 0" not in sent and "Bob: old 9" in sent and sent.endswith("Alice asks: what is 2+3?")


async def test_brain_end_to_end_everything_down_gives_no_provider_text(fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        fake_openai.error(500, "shard eu-7 exploded")
    fake_openai.error(401, "key revoked")
    brain, clock = brain_for(fake_openai, fallbacks=("openai/fake-backup",))
    with pytest.raises(BrainUnavailable) as info:
        await brain.respond(USER, [], ctx(), "fake:g1")
    assert "eu-7" not in str(info.value) and "revoked" not in str(info.value)
    assert isinstance(info.value.cause, LLMFatal)
    assert len(fake_openai.requests) == 4 and len(clock.slept) == 2


# --------------------------------------------------------------------------- import hygiene


def test_importing_and_building_touch_no_network_and_import_litellm_lazily() -> None:
    """In a fresh interpreter: importing the module or building a model does not import litellm (the first
    call does), and importing it resolves no hostname (no cost-map download, no telemetry)."""
    code = """
import socket, sys
seen = []
real = socket.getaddrinfo
def guarded(host, *a, **k):
    seen.append(host)
    raise socket.gaierror("offline")
socket.getaddrinfo = guarded
import bot.providers.litellm_llm as m
assert "litellm" not in sys.modules, "litellm imported at module import"
from bot.config import LLMSettings
model = m.build_language_model(LLMSettings(model="openai/x", api_base="http://127.0.0.1:9/v1"))
assert "litellm" not in sys.modules, "litellm imported when the model was built"
model._litellm.load()
assert "litellm" in sys.modules
print("LOOKUPS", seen)
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOOKUPS []" in out.stdout
