"""Cost abuse: floods, budgets and oversized inputs are refused before any model call, refusals are said
once per window, and a flooded group does not hold up the others (per-chat lanes in the inbox worker).

Messages go through the real durable inbox and worker (``FakeAdapter.inject``), the clock is manual so a
"minute" is exactly what the test says it is.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bot.events import ReplyRef
from bot.limits import REFUSALS
from bot.ports import Completion, ToolSpec
from tests.security.obedient import ObedientLLM, build_app, msg

LIMITS = "limits: {member_per_minute: 3, group_per_minute: 10, daily_tokens_per_group: 10000000, max_input_chars: 2000}\n"


class GatedLLM(ObedientLLM):
    """Obedient, but every call for group ``alpha`` waits at a gate the test opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def complete(self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                       timeout_s: float = 60.0) -> Completion:
        if 'the group "alpha"' in str(messages[0].get("content", "")):
            self.waiting += 1
            await self.gate.wait()
        return await super().complete(model, messages, tools, timeout_s)


def calls_for(llm: ObedientLLM, title: str) -> int:
    return sum(1 for c in llm.calls if f'the group "{title}"' in str(c["messages"][0]["content"]))


def refusals(adapter: Any, chat: str) -> Counter[tuple[str, str]]:
    """(refusal reason, member replied to) -> how many notices were sent in ``chat``."""
    by_text = {text: reason for reason, text in REFUSALS.items()}
    out: Counter[tuple[str, str]] = Counter()
    for o in adapter.sent:
        if o.chat.chat_id == chat and o.text in by_text:
            out[(by_text[o.text], o.mention_user_ids[0] if o.mention_user_ids else "")] += 1
    return out


async def flood(app: Any, adapter: Any, n: int, members: int, chat: str = "alpha") -> None:
    batch = [msg(app, f"@Pai question {i}?", chat=chat, author=f"m{i % members}") for i in range(n)]
    for i in range(0, n, 200):
        await adapter.sink.submit(batch[i:i + 200])


async def test_a_flood_is_bounded_by_the_rate_limits_and_other_groups_are_not_held_up(tmp_path):
    llm = GatedLLM()
    app, adapter = await build_app(tmp_path, llm, extra=LIMITS)
    try:
        await flood(app, adapter, 1000, members=50)
        await adapter.inject(msg(app, "@Pai is the shop open?", chat="gamma", author="carol"))
        # gamma's answer arrives while alpha's lane is still stuck on its first model call
        await adapter.wait_sent(1, timeout=30)
        assert [o.chat.chat_id for o in adapter.sent] == ["gamma"]
        assert llm.waiting == 1
        print("flood: gamma answered while alpha had 1 of its 1000 messages in progress and 999 waiting")
        llm.gate.set()
        await app.drain(timeout=120)
        notices = refusals(adapter, "alpha")
        calls = calls_for(llm, "alpha")
        print(f"flood: 1000 mentions from 50 members -> {calls} model calls (limit 10 per group per minute), "
              f"{sum(notices.values())} refusal notices")
        assert calls <= 10
        assert all(n == 1 for n in notices.values()), notices  # once per member (and group) per window
        assert sum(1 for reason, _ in notices if reason == "group rate") <= 1
        # the next minute allows the next ten, no more
        app.services.clock.advance(61)
        await flood(app, adapter, 200, members=50)
        await app.drain(timeout=60)
        assert calls_for(llm, "alpha") <= 20
    finally:
        llm.gate.set()
        await app.stop()


async def test_the_daily_token_budget_holds_per_group(tmp_path):
    llm = ObedientLLM()
    extra = "limits: {member_per_minute: 1000, group_per_minute: 1000, daily_tokens_per_group: 3000}\n"
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    try:
        await flood(app, adapter, 300, members=50)
        await app.drain(timeout=60)
        calls = calls_for(llm, "alpha")
        spent = app.services.state.tokens_today("fake:alpha")
        notices = refusals(adapter, "alpha")
        print(f"budget: 300 mentions -> {calls} model calls, {spent} tokens against a budget of 3000, "
              f"{sum(notices.values())} budget notice(s)")
        # checked before every answer: the group overshoots by at most the one answer that crossed the line
        assert spent - llm.usages[-1] < 3000 <= spent
        assert sum(n for (reason, _), n in notices.items() if reason == "daily budget") == 1
        # another group has its own budget
        await adapter.inject(msg(app, "@Pai is the bakery open?", chat="gamma", author="carol"))
        await app.drain()
        assert calls_for(llm, "gamma") == 1
    finally:
        await app.stop()


async def test_oversized_inputs_are_refused_before_any_model_call(tmp_path):
    llm = ObedientLLM()
    app, adapter = await build_app(tmp_path, llm, extra=LIMITS.replace("member_per_minute: 3", "member_per_minute: 100"))
    try:
        big = "x" * 2001
        for text in (f"@Pai {big}", f"/ask {big}", f"/summary {big}", f"/remind in 2h {big}", f"Pai, {big}"):
            await adapter.inject(msg(app, text, author="bob"))
        await app.drain()
        assert llm.calls == []
        # a huge quote under a short question (a fact check would send it whole) is oversized input too
        for text in ("@Pai is this right?", "/check", "@Pai what do you think?"):
            await adapter.inject(msg(app, text, author="bob", reply_to=ReplyRef("q", "y" * 500_000)))
        await app.drain()
        assert llm.calls == []
        assert [o.text for o in adapter.sent] == [REFUSALS["too long"]] * 8
        # a quote within the limit is fine
        await adapter.inject(msg(app, "@Pai is this right?", author="bob", reply_to=ReplyRef("q", "the sky is green")))
        await app.drain()
        assert len(llm.calls) >= 1
        print("oversized: 8 oversized messages (5 long texts, 3 huge quotes) -> 0 model calls, 8 refusals")
    finally:
        await app.stop()
