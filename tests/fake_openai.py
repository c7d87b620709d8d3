"""A fake OpenAI-compatible chat completions server for tests (aiohttp, 127.0.0.1, a free port).

It speaks the real wire protocol, so the code under test goes through litellm, the openai SDK and httpx
unchanged. Point a model at it with ``model="openai/<anything>"`` and ``api_base=fake.base_url``.

Behaviour is scripted: each request takes the next item of a queue (``fake.push(...)`` or the shortcuts
``reply``, ``tool_calls``, ``error``, ``rate_limit``, ``hang``, ``unauthorized``, ``context_too_long``,
``malformed``, ``cut_stream``); an empty queue answers with ``default`` (a text reply "ok"), or with
``responder(body)`` when one is set (to answer depending on the prompt). Every request body is recorded in
``requests`` so tests can assert what the model received.

Use it as an async context manager::

    async with FakeOpenAI() as fake:
        fake.reply("hello")
        ...

or through the ``fake_openai`` fixture; other test modules import it with
``from tests.fake_openai import fake_openai  # noqa: F401`` (or register it in a conftest).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request.

    ``kind`` is one of: ``text`` (a normal answer, ``text``), ``tools`` (an assistant message with
    ``tool_calls``: ``(name, arguments_json)`` pairs), ``status`` (an HTTP error: ``status``, ``body``,
    ``headers``), ``malformed`` (HTTP 200 with a body that is not JSON), ``cut`` (a stream that stops after
    ``text`` without ``[DONE]``; a non-streaming request gets a truncated JSON body). ``delay_s`` waits before
    answering (longer than the client's timeout simulates a hang).
    """

    kind: str = "text"
    text: str = "ok"
    tool_calls: tuple[tuple[str, str], ...] = ()
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class FakeOpenAI:
    """The server. ``base_url`` (``http://127.0.0.1:<port>/v1``) is valid once started."""

    def __init__(self, default: Behaviour | None = None) -> None:
        self.default = default or Behaviour()
        self.responder: Callable[[dict[str, Any]], Behaviour | str] | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._queue: deque[Behaviour] = deque()
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/chat/completions", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the asyncio server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        self._closing.set()  # releases requests parked in a delay
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ scripting

    def push(self, *behaviours: Behaviour) -> FakeOpenAI:
        self._queue.extend(behaviours)
        return self

    def reply(self, text: str, **kw: Any) -> FakeOpenAI:
        return self.push(Behaviour(kind="text", text=text, **kw))

    def tool_calls(self, *calls: tuple[str, str], **kw: Any) -> FakeOpenAI:
        return self.push(Behaviour(kind="tools", text="", tool_calls=tuple(calls), **kw))

    def error(self, status: int = 500, message: str = "internal error", **kw: Any) -> FakeOpenAI:
        body = _error_body(message, "server_error" if status >= 500 else "invalid_request_error", None)
        return self.push(Behaviour(kind="status", status=status, body=body, **kw))

    def rate_limit(self, retry_after: float | None = 1) -> FakeOpenAI:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        body = _error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded")
        return self.push(Behaviour(kind="status", status=429, body=body, headers=headers))

    def hang(self, seconds: float = 30.0, text: str = "too late") -> FakeOpenAI:
        return self.push(Behaviour(kind="text", text=text, delay_s=seconds))

    def unauthorized(self) -> FakeOpenAI:
        body = _error_body("Incorrect API key provided: sk-***", "invalid_request_error", "invalid_api_key")
        return self.push(Behaviour(kind="status", status=401, body=body))

    def context_too_long(self) -> FakeOpenAI:
        body = _error_body(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 "
            "tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
        )
        return self.push(Behaviour(kind="status", status=400, body=body))

    def malformed(self) -> FakeOpenAI:
        return self.push(Behaviour(kind="malformed"))

    def cut_stream(self, text: str = "half an ans") -> FakeOpenAI:
        return self.push(Behaviour(kind="cut", text=text))

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def prompts(self) -> list[str]:
        """Every request's message contents joined, for assertions on what the model saw."""
        return ["\n".join(str(m.get("content") or "") for m in r.get("messages", [])) for r in self.requests]

    # ------------------------------------------------------------------ serving

    def _next(self, body: dict[str, Any]) -> Behaviour:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            out = self.responder(body)
            return Behaviour(text=out) if isinstance(out, str) else out
        return self.default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response(_error_body("bad json", "invalid_request_error", None), status=400)
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        b = self._next(body)
        if b.delay_s > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), b.delay_s)
            except TimeoutError:
                pass
        if b.kind == "status":
            return web.json_response(b.body, status=b.status, headers=b.headers)
        if b.kind == "malformed":
            return web.Response(text="{this is not json", content_type="application/json")
        if body.get("stream"):
            return await self._stream(request, body, b)
        if b.kind == "cut":
            truncated = json.dumps(self._completion(body, b))[:40]
            return web.Response(text=truncated, content_type="application/json")
        return web.json_response(self._completion(body, b))

    def _tool_call_dicts(self, b: Behaviour) -> list[dict[str, Any]]:
        return [
            {"id": f"call_{next(self._ids)}", "type": "function", "function": {"name": n, "arguments": a}}
            for n, a in b.tool_calls
        ]

    def _completion(self, body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": b.text or None}
        finish = "stop"
        if b.kind == "tools":
            message["tool_calls"] = self._tool_call_dicts(b)
            finish = "tool_calls"
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": b.prompt_tokens,
                "completion_tokens": b.completion_tokens,
                "total_tokens": b.prompt_tokens + b.completion_tokens,
            },
        }

    async def _stream(self, request: web.Request, body: dict[str, Any], b: Behaviour) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        cid, model = f"chatcmpl-{next(self._ids)}", body.get("model", "fake")

        async def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            data = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())

        await chunk({"role": "assistant", "content": ""})
        for piece in _pieces(b.text):
            await chunk({"content": piece})
        if b.kind == "cut":
            return resp  # the connection ends without finish_reason or [DONE]
        if b.kind == "tools":
            calls = [dict(c, index=i) for i, c in enumerate(self._tool_call_dicts(b))]
            await chunk({"tool_calls": calls})
        usage = {"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens,
                 "total_tokens": b.prompt_tokens + b.completion_tokens}
        await chunk({}, "tool_calls" if b.kind == "tools" else "stop", usage=usage)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _pieces(text: str, size: int = 4) -> Sequence[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest_asyncio.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started ``FakeOpenAI``, closed after the test."""
    async with FakeOpenAI() as fake:
        yield fake


__all__ = ["Behaviour", "FakeOpenAI", "fake_openai"]
