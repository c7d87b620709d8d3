"""Cost abuse: floods, budgets and oversized inputs are refused before any model call, refusals are said
once per window, and a flooded group does not hold up the others (per-chat lanes in the inbox worker).

Messages go through the real durable inbox and worker (``FakeAdapter.inject``), the clock is manual so a
"minute" is exactly what the test says it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bot.admission import NOTICES_PER_HOUR
from bot.admission import REFUSAL as ADMISSION_REFUSAL
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


# --------------------------------------------------------------------------- budgets that bound outsiders

OPEN = "member_per_minute: 1000, group_per_minute: 1000, daily_tokens_per_group: 0, new_groups_per_hour: 0"


async def test_a_member_cannot_multiply_their_budget_by_opening_groups(tmp_path):
    llm = ObedientLLM()
    extra = f"limits: {{{OPEN}, daily_tokens_per_member: 2000, daily_tokens: 0}}\n"
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    try:
        for i in range(30):  # one member asks in ever new groups, one question after the other
            await adapter.inject(msg(app, f"@Pai question {i}?", chat=f"room{i}", author="mallory"))
            await app.drain(timeout=60)
        spent = app.services.state.member_tokens_today("fake:mallory")
        calls = len(llm.calls)
        notices = [o for o in adapter.sent if o.text == REFUSALS["member budget"]]
        print(f"member budget: 30 questions in 30 groups -> {calls} model calls, {spent} tokens against 2000, "
              f"{len(notices)} notice(s)")
        assert spent - llm.usages[-1] < 2000 <= spent  # over by at most the answer that crossed the line
        assert len(notices) == 1  # once per member per window, whichever group they ask in
        await adapter.inject(msg(app, "@Pai and me?", chat="room0", author="carol"))  # others are served
        await app.drain()
        assert len(llm.calls) == calls + 1
    finally:
        await app.stop()


async def test_the_bot_wide_token_budget_holds_whatever_the_number_of_groups_and_members(tmp_path):
    llm = ObedientLLM()
    extra = f"limits: {{{OPEN}, daily_tokens_per_member: 0, daily_tokens: 5000}}\n"
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    try:
        batch = [msg(app, f"@Pai question {i}?", chat=f"room{i % 40}", author=f"m{i}") for i in range(200)]
        await adapter.sink.submit(batch)
        await app.drain(timeout=60)
        today = app.services.state.bot_today()
        spent = today.prompt_tokens + today.completion_tokens
        notices = Counter(o.chat.chat_id for o in adapter.sent if o.text == REFUSALS["bot budget"])
        print(f"bot budget: 200 questions from 200 members in 40 groups -> {len(llm.calls)} model calls, "
              f"{spent} tokens against 5000, {sum(notices.values())} notices")
        # answers run side by side, each holding one call's worth of tokens until it is over: the budget is
        # overshot by less than one answer
        assert spent - max(llm.usages) < 5000 <= spent
        assert all(n == 1 for n in notices.values())  # once per group per window
        app.services.clock.advance(24 * 3600)  # a new day, a new budget
        await adapter.inject(msg(app, "@Pai good morning?", chat="room1", author="carol"))
        await app.drain()
        assert adapter.sent[-1].text != REFUSALS["bot budget"]
    finally:
        await app.stop()


class PricedLLM(ObedientLLM):
    """Obedient, and every call costs 0.01 USD."""

    async def complete(self, model: str, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                       timeout_s: float = 60.0) -> Completion:
        comp = await super().complete(model, messages, tools, timeout_s)
        return dataclasses.replace(comp, usage=dataclasses.replace(comp.usage, cost_usd=0.01))


async def test_the_bot_wide_cost_budget_holds(tmp_path):
    llm = PricedLLM()
    extra = f"limits: {{{OPEN}, daily_tokens_per_member: 0, daily_tokens: 0, daily_cost_usd: 0.1}}\n"
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    try:
        for i in range(40):
            await adapter.inject(msg(app, f"@Pai question {i}?", chat=f"room{i}", author=f"m{i}"))
        await app.drain(timeout=60)
        cost = app.services.state.bot_today().cost_usd
        print(f"cost budget: 40 questions in 40 groups -> {len(llm.calls)} model calls, {cost:.2f} USD against 0.10")
        # 40 groups at once, and the budget is overshot by less than one call (0.01 USD; ten calls may sum to
        # a hair under 0.1 in floating point, allowing an eleventh)
        assert cost - 0.01 < 0.1 <= cost + 1e-9 and len(llm.calls) <= 11
    finally:
        await app.stop()


async def test_a_thousand_new_groups_are_refused_past_the_admission_limit(tmp_path):
    llm = ObedientLLM()
    extra = f"limits: {{{OPEN.replace('new_groups_per_hour: 0', 'new_groups_per_hour: 20')}}}\n"
    app, adapter = await build_app(tmp_path, llm, extra=extra + 'groups: {"fake:configured": {name: Pai}}\n')
    memory = app.services.memory
    try:
        await adapter.inject(msg(app, "@Pai hello, old friends?", chat="old"))  # served before the flood
        await app.drain()
        app.services.clock.advance(3601)
        batch = [msg(app, f"@Pai hello from group {i}?", chat=f"new{i}", author=f"m{i}") for i in range(1000)]
        for i in range(0, 1000, 200):
            await adapter.sink.submit(batch[i:i + 200])
        await app.drain(timeout=120)
        answered = {o.chat.chat_id for o in adapter.sent if o.text != ADMISSION_REFUSAL}
        told = [o for o in adapter.sent if o.text == ADMISSION_REFUSAL]
        recorded = {r.chat_key for r in memory.records.values()}
        print(f"admission: 1000 new groups in a minute -> {len(answered - {'old'})} served, {len(told)} told "
              f"'not now', {len(llm.calls) - 1} model calls, {len(recorded - {'fake:old'})} recorded")
        assert len(answered - {"old"}) == 20 and len(llm.calls) == 21
        assert recorded == {f"fake:{chat}" for chat in answered}  # refused groups leave nothing behind
        assert len(told) == NOTICES_PER_HOUR  # the notices themselves are bounded
        # established and configured groups are served meanwhile
        await adapter.inject(msg(app, "@Pai still there?", chat="old"))
        await adapter.inject(msg(app, "@Pai and here?", chat="configured"))
        await app.drain()
        assert [o.chat.chat_id for o in adapter.sent[-2:]] == ["old", "configured"]
        # a refused group asking again within the hour is not told twice
        await adapter.inject(msg(app, "@Pai please?", chat="new500"))
        await app.drain()
        assert adapter.sent[-1].chat.chat_id == "configured"
        # an hour later there is room again
        app.services.clock.advance(3601)
        await adapter.inject(msg(app, "@Pai now?", chat="new500"))
        await app.drain()
        assert adapter.sent[-1].chat.chat_id == "new500" and adapter.sent[-1].text != ADMISSION_REFUSAL
    finally:
        await app.stop()


async def test_admitted_groups_stay_admitted_across_a_restart(tmp_path):
    llm = ObedientLLM()
    extra = f"limits: {{{OPEN.replace('new_groups_per_hour: 0', 'new_groups_per_hour: 1')}}}\n"
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    await adapter.inject(msg(app, "@Pai first?", chat="first"))
    await app.drain()
    await app.stop()
    app, adapter = await build_app(tmp_path, llm, extra=extra)
    try:
        await adapter.inject(msg(app, "@Pai second group?", chat="second"))  # the hour's one slot is used
        await adapter.inject(msg(app, "@Pai first again?", chat="first"))
        await app.drain()
        assert [(o.chat.chat_id, o.text == ADMISSION_REFUSAL) for o in adapter.sent] == [
            ("second", True), ("first", False)]
    finally:
        await app.stop()
