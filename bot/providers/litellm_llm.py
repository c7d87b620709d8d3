"""``LanguageModel`` through litellm: any provider, one call, errors translated into ``bot.errors``.

Only the composition root imports this module, and importing it imports nothing heavy: litellm is loaded
on a model's first call (``LazyLiteLLM``; the composition root warms it up on a worker thread once the bot
serves), after ``LITELLM_LOCAL_MODEL_COST_MAP`` is set so litellm uses its bundled price list instead of
downloading one. The model never retries by itself (``num_retries=0`` and
``max_retries=0`` for the openai SDK underneath): the brain owns retries and fallbacks.

Error translation (``translate_error``):

    ContextWindowExceededError, 400 "context length"  -> LLMContextTooLong
    RateLimitError / HTTP 429                          -> LLMRateLimited (retry_after from the headers)
    Timeout, httpx timeouts, asyncio timeouts          -> LLMTimeout
    connection errors, HTTP 5xx / 408 / 409            -> LLMRetryable
    Authentication / PermissionDenied / NotFound /
    BadRequest / UnprocessableEntity, other 4xx        -> LLMFatal
    anything else                                      -> LLMRetryable

Streaming (``stream_complete``, the optional ``StreamingLanguageModel`` role): the same request with
``stream=True`` and ``stream_options.include_usage`` (dropped by litellm where a provider lacks it). Content
deltas are accumulated and reported to ``on_text``; the chunks are assembled by litellm's
``stream_chunk_builder`` into one response (tool-call deltas joined by index, usage from the last chunk or
estimated), parsed like a non-streamed one. A stream that stops without a finish reason (a cut connection)
raises in litellm and becomes ``LLMRetryable``; so does a stream idle longer than ``timeout_s`` or running
longer than ``_STREAM_TOTAL_FACTOR`` times it. ``on_text`` is awaited between chunks and its exceptions
propagate untranslated; the time it takes does not count as the provider being idle.

Unknown exceptions are retryable on purpose: in practice they are transient garbage from a provider or a
proxy (a truncated body, a parser tripping over a malformed answer); retrying is bounded by
``max_retries`` and followed by the fallbacks, so the worst case costs a few seconds, whereas calling them
fatal would throw away a good model on a one-off glitch.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from bot.config import LLMSettings
from bot.errors import LLMContextTooLong, LLMError, LLMFatal, LLMRateLimited, LLMRetryable, LLMTimeout
from bot.ports import Completion, LanguageModel, TextCallback, ToolCall, ToolSpec, Usage

log = logging.getLogger("paibot.llm")

_CONTEXT_HINTS = ("context_length_exceeded", "maximum context length", "context window", "too many tokens")
_TIMEOUT_GRACE_S = 5.0  # our own deadline on top of litellm's, in case a provider client ignores its timeout
_MAX_DETAIL = 300
_STREAM_TOTAL_FACTOR = 4.0  # a streamed answer may take this many times timeout_s in all (it is not idle)


def load_litellm() -> Any:
    """Import litellm quietly: bundled cost map (no download), no telemetry, no debug banners."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


class LazyLiteLLM:
    """The litellm module, imported on first use: importing it takes most of a start-up, and a bot that has
    not been asked anything yet does not need it (the composition root warms it up in the background)."""

    def __init__(self) -> None:
        self._module: Any = None

    def load(self) -> Any:
        if self._module is None:
            self._module = load_litellm()
        return self._module

    def __getattr__(self, name: str) -> Any:
        return getattr(self.load(), name)


class LiteLLMModel:
    """``bot.ports.LanguageModel`` over ``litellm.acompletion``.

    ``api_base`` and ``api_key`` from the settings go to the configured model and to every fallback of the
    same provider (the text before the first "/": ``openai/a`` and ``openai/b`` share an endpoint, an
    ``ollama/...`` fallback keeps its own default). ``settings.extra`` entries are passed to litellm as
    extra keyword arguments; they cannot override the ones set here.
    """

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self._litellm: Any = LazyLiteLLM()
        self._provider = _provider(settings.model)

    async def complete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[ToolSpec] = (),
        timeout_s: float = 60.0,
    ) -> Completion:
        kwargs = self._request(model, messages, tools, timeout_s)
        try:
            resp = await asyncio.wait_for(self._litellm.acompletion(**kwargs), timeout_s + _TIMEOUT_GRACE_S)
        except Exception as exc:
            raise translate_error(exc, secret=self._settings.api_key) from exc
        try:
            return self._parse(resp, model)
        except Exception as exc:
            raise LLMRetryable(f"malformed response from {model}: {type(exc).__name__}") from exc

    async def stream_complete(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[ToolSpec] = (),
        timeout_s: float = 60.0,
        on_text: TextCallback | None = None,
    ) -> Completion:
        kwargs = self._request(model, messages, tools, timeout_s)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s * _STREAM_TOTAL_FACTOR + _TIMEOUT_GRACE_S
        stream = await self._guarded(self._litellm.acompletion(**kwargs), timeout_s + _TIMEOUT_GRACE_S)
        chunks: list[Any] = []
        text = ""
        try:
            while True:
                idle = min(timeout_s + _TIMEOUT_GRACE_S, deadline - loop.time())
                if idle <= 0:
                    raise LLMTimeout(f"the stream from {model} ran past {timeout_s * _STREAM_TOTAL_FACTOR:g}s")
                chunk = await self._guarded(_next_chunk(stream), idle)
                if chunk is None:
                    break
                chunks.append(chunk)
                piece = _delta_text(chunk)
                if piece:
                    text += piece
                    if on_text is not None:
                        await on_text(text)
        finally:
            await _close(stream)
        try:
            built = self._litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])
            return self._parse(built, model)
        except Exception as exc:
            raise LLMRetryable(f"malformed stream from {model}: {type(exc).__name__}") from exc

    async def _guarded(self, awaitable: Any, timeout_s: float) -> Any:
        """Await a provider call with our own deadline, translating whatever it raises."""
        try:
            return await asyncio.wait_for(awaitable, timeout_s)
        except Exception as exc:
            raise translate_error(exc, secret=self._settings.api_key) from exc

    def _request(
        self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec], timeout_s: float
    ) -> dict[str, Any]:
        s = self._settings
        kwargs: dict[str, Any] = dict(s.extra)
        kwargs.update(
            model=model,
            messages=[dict(m) for m in messages],
            timeout=timeout_s,
            max_tokens=s.max_reply_tokens,
            temperature=s.temperature,
            num_retries=0,
            max_retries=0,
            drop_params=True,  # providers that lack a parameter (temperature on some models) still answer
        )
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
            kwargs["tool_choice"] = "auto"
        if _provider(model) == self._provider:
            if s.api_base:
                kwargs["api_base"] = s.api_base
            if s.api_key:
                kwargs["api_key"] = s.api_key
        return kwargs

    def _parse(self, resp: Any, model: str) -> Completion:
        if not getattr(resp, "choices", None):
            raise ValueError("no choices in the response")
        msg = resp.choices[0].message
        calls = tuple(
            ToolCall(id=c.id or "", name=c.function.name or "", arguments=c.function.arguments or "")
            for c in (getattr(msg, "tool_calls", None) or ())
        )
        u = getattr(resp, "usage", None)
        usage = Usage(
            prompt_tokens=int(getattr(u, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(u, "completion_tokens", 0) or 0),
            cost_usd=self._cost(resp, model),
        )
        return Completion(text=msg.content or "", tool_calls=calls, usage=usage, model=model)

    def _cost(self, resp: Any, model: str) -> float:
        try:
            return float(self._litellm.completion_cost(completion_response=resp, model=model) or 0.0)
        except Exception as exc:  # unknown or self-hosted models have no price: free as far as we know
            log.debug("no price for %s (%s)", model, type(exc).__name__)
            return 0.0


async def _next_chunk(stream: AsyncIterator[Any]) -> Any:
    """The next chunk, or None at the end of the stream."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


def _delta_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None)
    if not choices:
        return ""  # the usage chunk at the end has no choices
    delta = getattr(choices[0], "delta", None)
    content = getattr(delta, "content", None)
    return content if isinstance(content, str) else ""


async def _close(stream: Any) -> None:
    """Release the provider connection of a stream we stop reading (best effort)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception as exc:  # noqa: BLE001 - a stream we abandon may fail to close in any way; never fatal
        log.debug("closing a model stream failed: %s", type(exc).__name__)


def build_language_model(settings: LLMSettings) -> LanguageModel | None:
    """The configured model, or None when ``settings.model`` is empty (the bot then runs without a model)."""
    if not settings.model:
        return None
    return LiteLLMModel(settings)


# --------------------------------------------------------------------------- error translation


def translate_error(exc: BaseException, secret: str = "") -> LLMError:
    """Map a litellm / openai / httpx / asyncio exception to the ``bot.errors`` tree (see the module
    docstring). The message names the exception type and status plus a short, secret-scrubbed excerpt of
    the provider's text, for the log; it is never shown in chat."""
    if isinstance(exc, LLMError):
        return exc
    load_litellm()  # first, so a translation before any model was built still imports litellm quietly
    import httpx
    import openai
    from litellm import exceptions as lx

    status = getattr(exc, "status_code", None)
    detail = _detail(exc, status, secret)
    text = str(exc).lower()
    if isinstance(exc, lx.ContextWindowExceededError):
        return LLMContextTooLong(detail)
    if isinstance(exc, openai.RateLimitError) or status == 429:
        return LLMRateLimited(detail, retry_after=retry_after_from(exc))
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException, TimeoutError)):
        return LLMTimeout(detail)
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        return LLMRetryable(detail)
    if isinstance(exc, openai.BadRequestError) and any(h in text for h in _CONTEXT_HINTS):
        return LLMContextTooLong(detail)
    fatal = (
        openai.AuthenticationError,
        openai.PermissionDeniedError,
        openai.NotFoundError,
        openai.BadRequestError,
        openai.UnprocessableEntityError,
    )
    if isinstance(exc, fatal):
        return LLMFatal(detail)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 425):
        return LLMFatal(detail)
    return LLMRetryable(detail)


def _detail(exc: BaseException, status: Any, secret: str) -> str:
    head = type(exc).__name__ + (f" (HTTP {status})" if isinstance(status, int) else "")
    text = str(exc).strip().replace("\n", " ")
    if secret:
        text = text.replace(secret, "***")
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return f"{head}: {text}" if text else head


def retry_after_from(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from ``retry-after-ms`` / ``retry-after`` (seconds or an
    HTTP date) on the error's response or headers; None when absent or unreadable."""
    for headers in (getattr(getattr(exc, "response", None), "headers", None), getattr(exc, "headers", None)):
        if isinstance(headers, Mapping) or hasattr(headers, "get"):
            value = parse_retry_after(headers)  # type: ignore[arg-type]
            if value is not None:
                return value
    return None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    def get(name: str) -> str | None:
        v = headers.get(name) or headers.get(name.title())
        return str(v).strip() if v is not None else None

    ms = get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


__all__ = ["LazyLiteLLM", "LiteLLMModel", "build_language_model", "load_litellm", "parse_retry_after", "translate_error"]
