"""LLM faults through the whole real path: a mention in a group -> the member pipeline -> the brain ->
litellm -> the openai SDK -> HTTP -> the fake OpenAI-compatible server on loopback, scripted to fail.

For each fault: the retries are bounded (requests counted at the server), the fallback model takes over
when the primary is out, a context that is too long is trimmed, and the group sees either the answer or,
at worst, exactly one fixed apology. The fake's error texts are distinctive; none of them may ever reach
the chat.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.brain import APOLOGY
from bot.config import parse_settings
from tests.fake_openai import Behaviour, FakeOpenAI, fake_openai  # noqa: F401 - the fixture
from tests.fakes import FakeAdapter, FakeMemory, make_message
from tests.reliability.harness import figure

MAX_RETRIES = 2
# Every error text the fake can produce; none may appear in anything the bot says.
PROVIDER_TEXTS = (
    "internal error", "Rate limit reached", "Incorrect API key", "maximum context length", "sk-",
    "context_length_exceeded", "invalid_api_key", "server_error", "Traceback", "openai", "litellm", "HTTP",
    "Bad Gateway", "overloaded",
)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing in these tests may resolve a name beyond loopback (a provider, a price list)."""
    real = socket.getaddrinfo
    tried: list[Any] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in ("127.0.0.1", "localhost", "::1", None):
            tried.append(name)
            raise socket.gaierror(f"tests may not resolve {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert tried == [], f"something tried to reach {tried}"


@dataclass(frozen=True)
class Case:
    name: str
    script: Callable[[FakeOpenAI], None]
    requests: dict[str, int]  # model -> requests the server must have seen for the one mention
    answer: str  # what the group must see


def overloaded(fake: FakeOpenAI) -> None:
    fake.push(Behaviour(kind="status", status=503, body={"error": {"message": "The server is overloaded",
                                                                  "type": "server_error", "code": None}}))


CASES = [
    Case("rate limited twice, Retry-After honoured",
         lambda f: (f.rate_limit(0.1), f.rate_limit(0.1), f.reply("answer after waiting")),
         {"fake-main": 3}, "answer after waiting"),
    Case("5xx then recovery", lambda f: (f.error(500), overloaded(f), f.reply("answer after 5xx")),
         {"fake-main": 3}, "answer after 5xx"),
    Case("timeout then recovery", lambda f: (f.hang(30), f.reply("answer after a timeout")),
         {"fake-main": 2}, "answer after a timeout"),
    Case("answer cut mid-body then recovery", lambda f: (f.cut_stream("half an ans"), f.reply("whole answer")),
         {"fake-main": 2}, "whole answer"),
    Case("malformed body then recovery", lambda f: (f.malformed(), f.reply("well-formed answer")),
         {"fake-main": 2}, "well-formed answer"),
    Case("context too long, trimmed", lambda f: (f.context_too_long(), f.reply("answer from a shorter prompt")),
         {"fake-main": 2}, "answer from a shorter prompt"),
    Case("bad credentials on the primary, fallback answers",
         lambda f: (f.unauthorized(), f.reply("fallback answer")),
         {"fake-main": 1, "fake-fallback": 1}, "fallback answer"),
    Case("primary keeps failing, fallback answers",
         lambda f: ([f.error(502, "Bad Gateway") for _ in range(MAX_RETRIES + 1)], f.reply("fallback after 5xx")),
         {"fake-main": MAX_RETRIES + 1, "fake-fallback": 1}, "fallback after 5xx"),
    Case("everything fails: one apology",
         lambda f: [f.error(500) for _ in range(2 * (MAX_RETRIES + 1))],
         {"fake-main": MAX_RETRIES + 1, "fake-fallback": MAX_RETRIES + 1}, APOLOGY),
    Case("bad credentials everywhere: one apology",
         lambda f: (f.unauthorized(), f.unauthorized()),
         {"fake-main": 1, "fake-fallback": 1}, APOLOGY),
]  # fmt: skip


def settings(tmp_path: Path, fake: FakeOpenAI):  # type: ignore[no-untyped-def]
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n"
        f"llm: {{model: openai/fake-main, fallbacks: [openai/fake-fallback], api_base: '{fake.base_url}',"
        f" api_key: sk-reliability-0123456789, timeout_s: 1.0, max_retries: {MAX_RETRIES},"
        " retry_base_s: 0.05, retry_max_s: 0.5}\n"
        "adapters: {web: {enabled: false}}\n"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_llm_fault_ends_in_an_answer_or_one_apology_with_bounded_retries(
    case: Case, tmp_path: Path, fake_openai: FakeOpenAI  # noqa: F811 - the fixture
) -> None:
    adapter = FakeAdapter()
    memory = FakeMemory()
    app = App(settings(tmp_path, fake_openai), adapters={"fake": adapter}, memory=memory, skills=[])
    await app.start()
    try:
        for i in range(12):  # some history, so there is context to trim
            await adapter.inject(make_message(f"earlier note {i}: the picnic moves to the lake " + "la " * 40,
                                              author=f"m{i % 3}", sent_at=datetime.now(UTC)))  # fmt: skip
        case.script(fake_openai)
        await adapter.inject(make_message("@Pai where is the picnic?", mentions_me=True, msg_id="ask",
                                          sent_at=datetime.now(UTC)))  # fmt: skip
        await app.drain(60)
    finally:
        await app.stop()

    by_model: dict[str, int] = {}
    for body in fake_openai.requests:
        by_model[body["model"]] = by_model.get(body["model"], 0) + 1
    said = [o.text for o in adapter.sent]
    leaked = [t for t in PROVIDER_TEXTS for s in said if t.lower() in s.lower()]
    sizes = [len(p) for p in fake_openai.prompts]
    line = figure(
        f"llm fault [{case.name}]", requests=by_model, messages_in_chat=len(said),
        apologies=said.count(APOLOGY), provider_text_in_chat=len(leaked), prompt_chars=sizes,
    )  # fmt: skip
    assert by_model == case.requests, line
    assert said == [case.answer], line
    assert leaked == [], line
    assert fake_openai.pending == 0, line  # every scripted fault was actually met
    if case.name.startswith("context too long"):
        assert sizes[1] < sizes[0], line  # the retry sent a trimmed prompt
