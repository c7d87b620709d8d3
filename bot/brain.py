"""The brain: one conversation in, one answer out, through a ``LanguageModel`` and the allowed tools.

Platform-free and provider-free (no litellm here; the model arrives as a ``bot.ports.LanguageModel``).

``Brain.respond`` runs a bounded tool-calling loop. Every model call goes through the resilience ladder:

    for each model in (settings.model, *settings.fallbacks):
        LLMRetryable       -> sleep (``retry_after`` if the provider gave one, else jittered exponential
                              backoff) and retry, at most ``max_retries`` times, then the next model.
                              A ``retry_after`` longer than ``retry_max_s`` is honoured by not waiting:
                              the next model is tried at once.
        LLMContextTooLong  -> drop the oldest half of the droppable history (never a system message, never
                              the last user turn or what follows it; a single packed user message loses
                              its oldest lines) and retry, at most ``MAX_TRIMS`` times (``trim_history``).
        LLMFatal / other   -> the next model at once.
    every model failed      -> ``BrainUnavailable`` (its text is generic; the causes are in the log).

Streaming (``respond(..., on_text=sink)``, with a model that implements ``StreamingLanguageModel``): every
model call's text goes to the ``TextSink`` as it arrives; when that text turns out not to be the answer
(the call failed and is retried or replaced by a fallback, or it asked for tools), the sink is reset, so
only the final answer stays shown. A model without streaming is called the usual way and the sink is never
touched; the caller then shows ``BrainReply.text`` as a whole.

Sleeps go through the injected ``Clock``, so tests run the ladder in no real time. Tools never crash the
loop: an unknown tool, arguments that are not a JSON object, a tool that raises or times out all become an
error string fed back to the model as that call's result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import LLMSettings
from bot.errors import LLMContextTooLong, LLMError, LLMRateLimited, LLMRetryable
from bot.i18n import N_
from bot.ports import (
    Clock,
    Completion,
    LanguageModel,
    StreamingLanguageModel,
    TextSink,
    Tool,
    ToolCall,
    ToolContext,
    ToolSpec,
    Usage,
    UsageLedger,
)

log = logging.getLogger("paibot.brain")

APOLOGY = N_("Sorry, I can't think right now (my language model is unavailable). Please try again in a minute.")

MAX_TRIMS = 4  # context-too-long retries per model; each drops half of what may be dropped
MAX_CALLS_PER_ROUND = 8  # tool calls honoured from one model answer; the rest get an error result
MAX_TOOL_RESULT_CHARS = 12_000  # a tool's result is cut here before it goes back into the prompt

FINAL_ANSWER_NOTE = (
    "You have used all your tool calls for this message. Answer now with what you already know; "
    "do not ask for more tools."
)


class BrainUnavailable(LLMError):
    """Every configured model failed. ``cause`` is the last provider error (also chained as
    ``__cause__``). The message is deliberately generic: it may be shown, the cause must not be."""

    def __init__(self, cause: BaseException | None = None) -> None:
        super().__init__("the language model is unavailable")
        self.cause = cause


@dataclass(frozen=True, slots=True)
class BrainReply:
    """The final answer. ``usage`` is summed over every model call of this reply; ``model`` is the model
    that gave the final answer; ``tool_calls_made`` names the tools called, in order (also failed calls)."""

    text: str
    usage: Usage
    model: str
    tool_calls_made: tuple[str, ...] = ()


class _SystemClock:
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Relay:
    """Passes one reply's streamed text to the caller's sink, remembering whether anything is shown, and
    keeps a failing sink from costing the answer (the sink contract says it never raises)."""

    def __init__(self, sink: TextSink | None) -> None:
        self._sink = sink
        self._shown = False

    @property
    def streams(self) -> bool:
        return self._sink is not None

    async def text(self, text: str) -> None:
        if self._sink is None or not text:
            return
        self._shown = True
        try:
            await self._sink.update(text)
        except Exception:
            log.exception("the text sink failed an update; the answer goes on")

    async def reset(self) -> None:
        if self._sink is None or not self._shown:
            return
        self._shown = False
        try:
            await self._sink.reset()
        except Exception:
            log.exception("the text sink failed a reset; the answer goes on")


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens, a.cost_usd + b.cost_usd
    )


class Brain:
    """Answers a conversation with a language model and tools.

    ``messages`` given to ``respond`` are OpenAI-style chat dicts and are not modified. Retries, fallbacks
    and context trimming follow the module docstring. Usage of every successful call is recorded with
    ``ledger.add_usage(group_key, model, usage, member_key)``, the member being the author of
    ``ctx.message`` (a failing ledger is logged, never fatal).
    """

    def __init__(
        self,
        llm: LanguageModel,
        settings: LLMSettings,
        clock: Clock | None = None,
        ledger: UsageLedger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._llm = llm
        self._settings = settings
        self._clock = clock or _SystemClock()
        self._ledger = ledger
        self._rng = rng or random.Random()
        self._models: tuple[str, ...] = (settings.model, *settings.fallbacks)

    async def respond(
        self,
        messages: list[dict],
        tools: Sequence[Tool],
        ctx: ToolContext,
        group_key: str,
        on_text: TextSink | None = None,
    ) -> BrainReply:
        """Answer ``messages``, letting the model call ``tools`` for at most ``max_tool_rounds`` rounds, then
        asking once more without tools. With ``on_text`` and a streaming model, the answer's text is shown
        to the sink while it is written (see the module docstring). Raises only ``BrainUnavailable``."""
        relay = _Relay(on_text if isinstance(self._llm, StreamingLanguageModel) else None)
        convo: list[dict[str, Any]] = [dict(m) for m in messages]
        by_name = {t.spec.name: t for t in tools}
        specs = tuple(t.spec for t in tools)
        total, start = Usage(), 0
        made: list[str] = []
        # The member whose message this answers pays (bot-wide and per-member budgets, bot.limits).
        payer = "" if ctx.message.from_me else ctx.message.author.key
        rounds = max(0, self._settings.max_tool_rounds)
        for round_no in range(rounds + 1):
            offer = specs if round_no < rounds else ()
            if specs and not offer and round_no > 0:
                convo.append({"role": "system", "content": FINAL_ANSWER_NOTE})
            comp, start = await self._complete(convo, offer, (group_key, payer), start, relay)
            total = add_usage(total, comp.usage)
            if not comp.tool_calls or not offer:
                return BrainReply(comp.text or "", total, self._models[start], tuple(made))
            await relay.reset()  # what the model said before its tool calls is not the answer
            await self._run_round(comp, round_no, by_name, ctx, convo, made)
        raise AssertionError("unreachable: the last round offers no tools")  # pragma: no cover

    # ------------------------------------------------------------------ tools

    async def _run_round(
        self,
        comp: Completion,
        round_no: int,
        by_name: dict[str, Tool],
        ctx: ToolContext,
        convo: list[dict[str, Any]],
        made: list[str],
    ) -> None:
        """Append the assistant's tool-call message and one ``tool`` message per call."""
        calls = [  # some providers send no ids; the tool messages still need one to answer
            ToolCall(c.id or f"call_{round_no}_{i}", c.name, c.arguments)
            for i, c in enumerate(comp.tool_calls)
        ]
        convo.append(
            {
                "role": "assistant",
                "content": comp.text or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            }
        )
        for i, call in enumerate(calls):
            made.append(call.name)
            if i >= MAX_CALLS_PER_ROUND:
                result = f"error: at most {MAX_CALLS_PER_ROUND} tool calls per turn; this one was not run"
            else:
                result = await self._run_tool(call, by_name, ctx)
            convo.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})

    async def _run_tool(self, call: ToolCall, by_name: dict[str, Tool], ctx: ToolContext) -> str:
        tool = by_name.get(call.name)
        if tool is None:
            known = ", ".join(sorted(by_name)) or "none"
            return f"error: there is no tool named {call.name!r} (available: {known})"
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return f"error: the arguments are not valid JSON ({exc.msg}); call again with a JSON object"
        if not isinstance(args, dict):
            return "error: the arguments must be a JSON object"
        try:
            result = await asyncio.wait_for(tool.run(args, ctx), self._settings.timeout_s)
        except TimeoutError:
            log.warning("tool %s timed out after %ss", call.name, self._settings.timeout_s)
            return f"error: the tool {call.name} timed out"
        except Exception as exc:  # a tool bug must not kill the answer; the model hears a generic error
            log.exception("tool %s failed", call.name)
            return f"error: the tool {call.name} failed ({type(exc).__name__})"
        text = str(result)
        if len(text) > MAX_TOOL_RESULT_CHARS:
            text = text[:MAX_TOOL_RESULT_CHARS] + " [...truncated]"
        return text

    # ------------------------------------------------------------------ models

    async def _complete(
        self, convo: list[dict[str, Any]], specs: Sequence[ToolSpec], payers: tuple[str, str], start: int,
        relay: _Relay,
    ) -> tuple[Completion, int]:
        """One answer from the first model (from index ``start`` on) that gives one. Later rounds of the
        same reply start at the model that answered, so a dead primary is not retried every round."""
        last: BaseException | None = None
        for idx in range(start, len(self._models)):
            model = self._models[idx]
            try:
                comp = await self._call_model(model, convo, specs, relay)
            except LLMError as exc:
                log.warning("model %s failed, %s: %s", model or "<default>", type(exc).__name__, exc)
                last = exc
                continue
            except Exception as exc:  # a LanguageModel breaking its contract; treat it like a fatal error
                log.exception("model %s raised a non-LLMError", model or "<default>")
                last = exc
                continue
            self._record(payers, model, comp.usage)
            return comp, idx
        log.error("every model failed (%s); last cause: %r", ", ".join(self._models), last)
        raise BrainUnavailable(last) from last

    async def _call_model(
        self, model: str, convo: list[dict[str, Any]], specs: Sequence[ToolSpec], relay: _Relay
    ) -> Completion:
        """Call one model with retries and trimming; raises the last ``LLMError`` when it gives up.
        Trimming edits ``convo`` in place, so later rounds keep the shorter history. Whatever a failed
        attempt streamed is reset before the next attempt (or before the error leaves)."""
        retries = trims = 0
        while True:
            try:
                return await self._attempt(model, convo, specs, relay)
            except LLMContextTooLong:
                if trims >= MAX_TRIMS or not trim_history(convo):
                    raise
                trims += 1
                log.info("context too long for %s; dropped older history (trim %d)", model, trims)
            except LLMRetryable as exc:
                delay = None if retries >= self._settings.max_retries else self._delay(exc, retries)
                if delay is None:
                    raise
                retries += 1
                log.info("model %s: %s; retry %d in %.1fs", model, type(exc).__name__, retries, delay)
                await self._clock.sleep(delay)

    async def _attempt(
        self, model: str, convo: list[dict[str, Any]], specs: Sequence[ToolSpec], relay: _Relay
    ) -> Completion:
        timeout_s = self._settings.timeout_s
        if relay.streams and isinstance(self._llm, StreamingLanguageModel):
            try:
                return await self._llm.stream_complete(model, list(convo), specs, timeout_s, relay.text)
            except Exception:
                await relay.reset()
                raise
        return await self._llm.complete(model, list(convo), specs, timeout_s)

    def _delay(self, exc: LLMRetryable, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when the provider asks for more than we wait."""
        s = self._settings
        if isinstance(exc, LLMRateLimited) and exc.retry_after is not None:
            return max(0.0, exc.retry_after) if exc.retry_after <= s.retry_max_s else None
        ceiling = min(s.retry_max_s, s.retry_base_s * (2**attempt))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def _record(self, payers: tuple[str, str], model: str, usage: Usage) -> None:
        if self._ledger is None:
            return
        group_key, member_key = payers
        try:
            self._ledger.add_usage(group_key, model, usage, member_key)
        except Exception:  # accounting must not cost the group its answer
            log.exception("could not record usage for %s", group_key)


def trim_history(convo: list[dict[str, Any]]) -> bool:
    """Shorten ``convo`` in place for a model whose context window it overflowed; False when it cannot.

    First choice: drop the oldest half (at least one) of the droppable messages, i.e. non-system messages
    before the last user message. An assistant message with ``tool_calls`` and the ``tool`` messages
    answering it go together, so no orphan tool result is left behind. System messages, the last user
    message and everything after it are kept.

    When nothing is droppable (a prompt that packs the whole group context into one user message), the
    oldest half of the last user message's lines goes instead: its first lines, never its last line (the
    request) and never a line that is only a marker tag such as ``<recent_group_messages>``, so the
    marking of untrusted content stays intact.
    """
    last_user = max((i for i, m in enumerate(convo) if m.get("role") == "user"), default=-1)
    units: list[list[int]] = []
    for i in range(max(last_user, 0)):
        role = convo[i].get("role")
        if role == "system":
            continue
        if role == "tool" and units and convo[units[-1][0]].get("tool_calls"):
            units[-1].append(i)
        else:
            units.append([i])
    if units:
        drop = {i for unit in units[: max(1, len(units) // 2)] for i in unit}
        convo[:] = [m for i, m in enumerate(convo) if i not in drop]
        return True
    return last_user >= 0 and _trim_lines(convo, last_user)


_MARKER = re.compile(r"^\s*</?[A-Za-z_][\w-]*>\s*$")


def _trim_lines(convo: list[dict[str, Any]], index: int) -> bool:
    content = convo[index].get("content")
    if not isinstance(content, str):
        return False
    lines = content.split("\n")
    droppable = [i for i in range(len(lines) - 1) if not _MARKER.match(lines[i])]
    if not droppable:
        return False
    drop = set(droppable[: max(1, len(droppable) // 2)])
    convo[index] = {**convo[index], "content": "\n".join(x for i, x in enumerate(lines) if i not in drop)}
    return True


__all__ = ["APOLOGY", "Brain", "BrainReply", "BrainUnavailable", "trim_history"]
