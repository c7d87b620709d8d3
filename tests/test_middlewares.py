"""The member's cross-cutting policies, each a middleware tested on its own: the chain itself, quiet hours,
rate limits, the daily budget, the welcome note and the typing indicator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import LimitSettings
from bot.i18n import SOURCE_LOCALE, Catalogs, Translator
from bot.limits import RateLimiter
from bot.middleware import ReplyDraft, Turn, chain
from bot.middlewares.limits import DailyBudget, RateLimits
from bot.middlewares.quiet_hours import QuietHours
from bot.middlewares.typing import Typing
from bot.middlewares.welcome import WELCOME, Welcome
from bot.policy import Decision
from bot.ports import Capabilities, Usage
from bot.state import StateDB
from tests.fakes import FakeAdapter, ManualClock, make_message

SPEAK = Decision(True, "mention", prompt="hello")


def turn(text: str = "hello", decision: Decision = SPEAK, **kw: Any) -> Turn:
    return Turn(make_message(text, **kw), "fake:g1", decision, reply_to_me=False)


async def run(middlewares: list[Any], subject: Any) -> list[Any]:
    """Run ``subject`` through the chain; returns what reached the end (the subject, or nothing)."""
    reached: list[Any] = []

    async def end(s: Any) -> None:
        reached.append(s)

    await chain(middlewares, end)(subject)
    return reached


# --------------------------------------------------------------------------- the chain


async def test_the_first_middleware_is_the_outermost_and_may_stop_the_chain() -> None:
    order: list[str] = []

    def named(name: str, stop: bool = False) -> Any:
        async def mw(subject: Any, call_next: Any) -> None:
            order.append(f"{name} in")
            if not stop:
                await call_next(subject)
            order.append(f"{name} out")

        return mw

    assert await run([named("a"), named("b")], "x") == ["x"]
    assert order == ["a in", "b in", "b out", "a out"]
    order.clear()
    assert await run([named("a", stop=True), named("b")], "x") == []
    assert order == ["a in", "a out"]


# --------------------------------------------------------------------------- quiet hours


class Quiet:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def quiet_now(self, group_key: str) -> bool:
        return self.quiet


async def test_quiet_hours_hold_back_keyword_answers_only() -> None:
    keyword = turn(decision=Decision(True, "keyword", prompt="x"))
    (t,) = await run([QuietHours(Quiet(True))], keyword)  # type: ignore[arg-type]
    assert not t.decision.speak and t.decision.reason == "quiet hours"
    (t,) = await run([QuietHours(Quiet(True))], turn())  # type: ignore[arg-type]
    assert t.decision == SPEAK  # mentions, replies, commands are answered as ever
    (t,) = await run([QuietHours(Quiet(False))], turn(decision=Decision(True, "keyword")))  # type: ignore[arg-type]
    assert t.decision.speak


# --------------------------------------------------------------------------- limits and budget


class Ledger:
    def __init__(self, tokens: int = 0) -> None:
        self.tokens = tokens

    def tokens_today(self, group_key: str) -> int:
        return self.tokens

    def member_tokens_today(self, member_key: str) -> int:
        return 0

    def bot_today(self) -> Usage:
        return Usage()


def limiter(clock: ManualClock, tokens: int = 0, **limits: int) -> RateLimiter:
    return RateLimiter(LimitSettings(**limits), clock.now, Ledger(tokens))  # type: ignore[arg-type]


def gates(lim: RateLimiter) -> list[Any]:
    return [RateLimits(lim), DailyBudget(lim)]


async def test_a_member_past_the_window_is_refused_and_told_once_per_window() -> None:
    clock = ManualClock()
    lim = limiter(clock, member_per_minute=2)
    seen = [(await run(gates(lim), turn(author="ann")))[0].refusal for _ in range(4)]
    assert seen[:2] == [None, None]
    assert [r.reason for r in seen[2:]] == ["member rate", "member rate"]
    assert [r.notify for r in seen[2:]] == [True, False]
    assert (await run(gates(lim), turn(author="bob")))[0].refusal is None  # others are not held back
    clock.advance(61)
    assert (await run(gates(lim), turn(author="ann")))[0].refusal is None  # a new window


async def test_an_oversized_input_counts_its_quote_and_is_always_explained() -> None:
    lim = limiter(ManualClock(), max_input_chars=10)
    quoted = SimpleNamespace(text="a long quoted message", message_id="1", author=None)
    (t,) = await run(gates(lim), turn("short", reply_to=quoted))
    assert t.refusal is not None and (t.refusal.reason, t.refusal.notify) == ("too long", True)


async def test_the_daily_budget_refuses_without_using_up_the_rate_windows() -> None:
    lim = limiter(ManualClock(), tokens=500, member_per_minute=2, daily_tokens_per_group=500)
    seen = [(await run(gates(lim), turn(author="ann")))[0].refusal for _ in range(5)]
    assert {r.reason for r in seen} == {"daily budget"}  # never "member rate": refused turns do not count
    assert [r.notify for r in seen] == [True, False, False, False, False]


async def test_no_budget_means_no_limit_and_silent_turns_are_not_gated() -> None:
    lim = limiter(ManualClock(), tokens=10**9, daily_tokens_per_group=0)
    assert (await run(gates(lim), turn()))[0].refusal is None
    busy = limiter(ManualClock(), group_per_minute=1)
    for _ in range(3):  # messages the member does not answer neither count nor get refused
        assert (await run(gates(busy), turn(decision=Decision(False, "not addressed"))))[0].refusal is None
    assert (await run(gates(busy), turn()))[0].refusal is None




class SharedLedger:
    """A ledger the test spends from: per member and bot-wide."""

    def __init__(self) -> None:
        self.members: dict[str, int] = {}
        self.bot = 0

    def spend(self, member: str, tokens: int) -> None:
        self.members[member] = self.members.get(member, 0) + tokens
        self.bot += tokens

    def tokens_today(self, group_key: str) -> int:
        return 0

    def member_tokens_today(self, member_key: str) -> int:
        return self.members.get(member_key, 0)

    def bot_today(self) -> Usage:
        return Usage(self.bot, 0, 0.0)


async def test_a_member_budget_counts_every_group() -> None:
    ledger = SharedLedger()
    lim = RateLimiter(LimitSettings(daily_tokens_per_member=100, daily_tokens=0), ManualClock().now, ledger)
    ledger.spend("fake:ann", 100)
    (t,) = await run(gates(lim), turn(author="ann", chat="another-group"))
    assert t.refusal is not None and t.refusal.reason == "member budget" and t.refusal.notify
    (t,) = await run(gates(lim), turn(author="bob", chat="another-group"))
    assert t.refusal is None


async def test_linked_accounts_share_one_member_budget() -> None:
    """Ann on two platforms is one person: what she spent as one account counts for the other."""
    ledger = SharedLedger()
    lim = RateLimiter(LimitSettings(daily_tokens_per_member=100, daily_tokens=0), ManualClock().now, ledger)
    linked = {"fake:ann": "ann", "qq:ann": "ann"}
    budget = DailyBudget(lim, lambda k: linked.get(k, k),
                         lambda k: tuple(a for a in linked if linked[a] == linked[k]) if k in linked else (k,))
    ledger.spend("fake:ann", 60)
    (t,) = await run([budget], turn(author="ann"))
    assert t.refusal is None  # 60 of 100
    ledger.spend("qq:ann", 40)
    (t,) = await run([budget], turn(author="ann", chat="another-group"))
    assert t.refusal is not None and t.refusal.reason == "member budget"
    (t,) = await run([budget], turn(author="bob"))
    assert t.refusal is None


async def test_an_answer_in_flight_holds_its_reservation_and_a_later_one_waits_for_it() -> None:
    """Budget 100, each answer in flight holds 100: while one runs, a second cannot tell whether it fits
    (0 spent + 100 held), so it waits; the first ends having spent 60, and the second is decided on what was
    spent (60 < 100): it goes. Once the budget is spent, the next is refused."""
    ledger = SharedLedger()
    lim = RateLimiter(LimitSettings(daily_tokens_per_member=0, daily_tokens=100), ManualClock().now, ledger,
                      reserve_tokens=100)
    entered: list[str] = []
    leave = asyncio.Event()

    async def answer(t: Turn) -> None:
        if t.refusal is None:
            entered.append(t.message.author.user_id)
            await leave.wait()
            ledger.spend(t.message.author.key, 60)

    first = asyncio.create_task(chain(gates(lim), answer)(turn(author="ann", chat="g1")))
    second_turn = turn(author="bob", chat="g2")
    second = asyncio.create_task(chain(gates(lim), answer)(second_turn))
    for _ in range(20):
        await asyncio.sleep(0)
    assert entered == ["ann"]  # bob waits while ann's answer holds the reservation
    leave.set()
    await first
    await second
    assert entered == ["ann", "bob"] and second_turn.refusal is None
    assert ledger.bot == 120  # overshot by less than one reservation
    third = turn(author="carol", chat="g3")
    await chain(gates(lim), answer)(third)
    assert third.refusal is not None and third.refusal.reason == "bot budget"


# --------------------------------------------------------------------------- welcome


@pytest.fixture
def state(tmp_path: Path) -> Any:
    db = StateDB(tmp_path / "paibot.db")
    yield db
    db.close()


def welcome_services(state: StateDB, enabled: bool = True) -> Any:
    catalogs = Catalogs()

    async def translator(key: str) -> Translator:
        return catalogs.translator(SOURCE_LOCALE)

    return SimpleNamespace(
        settings=SimpleNamespace(bot=SimpleNamespace(welcome=enabled)),
        state=state,
        name_for=lambda key: "Pai",
        name_shown=lambda key, t: "Pai",
        translator=translator,
    )


async def test_the_first_reply_in_a_group_carries_the_welcome_and_marks_it_once_claimed(
    state: StateDB,
) -> None:
    welcome = Welcome(welcome_services(state))
    (first,) = await run([welcome], ReplyDraft(make_message("hi"), "answer"))
    assert first.full_text == f"answer\n\n{WELCOME.format(name='Pai')}"
    assert await state.group_get("fake:g1", "welcomed") is None  # not before the ledger has the reply
    for hook in first.on_claimed:
        await hook()
    (second,) = await run([welcome], ReplyDraft(make_message("hi"), "answer"))
    assert second.full_text == "answer"
    (other_group,) = await run([welcome], ReplyDraft(make_message("hi", chat="g2"), "answer"))
    assert other_group.notes


async def test_a_released_claim_gives_the_welcome_to_the_next_answer(state: StateDB) -> None:
    welcome = Welcome(welcome_services(state))
    (draft,) = await run([welcome], ReplyDraft(make_message("hi"), ""))
    for hook in [*draft.on_claimed, *draft.on_released]:
        await hook()
    (again,) = await run([welcome], ReplyDraft(make_message("hi"), "answer"))
    assert again.notes


async def test_no_welcome_when_turned_off(state: StateDB) -> None:
    (draft,) = await run(
        [Welcome(welcome_services(state, enabled=False))], ReplyDraft(make_message("hi"), "a")
    )
    assert draft.full_text == "a" and not draft.on_claimed


# --------------------------------------------------------------------------- typing


def typing_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("typing:") and not t.done()]


async def test_typing_shows_while_the_answer_is_produced_and_stops_after() -> None:
    adapter = FakeAdapter(capabilities=Capabilities(typing=True))
    shown = asyncio.Event()

    async def produce(t: Turn) -> None:
        while not adapter.typings:  # the indicator is up before the answer is done
            await asyncio.sleep(0)
        shown.set()

    await chain([Typing({"fake": adapter})], produce)(turn())
    assert shown.is_set() and adapter.typings[0].key == "fake:g1"
    assert typing_tasks() == []


async def test_a_streamed_answer_stops_typing_early_and_platforms_without_typing_are_left_alone() -> None:
    adapter = FakeAdapter(capabilities=Capabilities(typing=True))

    async def stream(t: Turn) -> None:
        while not adapter.typings:
            await asyncio.sleep(0)
        await t.stop_typing()  # the first message is on screen
        assert typing_tasks() == []

    await chain([Typing({"fake": adapter})], stream)(turn())
    silent = FakeAdapter(capabilities=Capabilities(typing=False))
    await chain([Typing({"fake": silent})], stream_without_typing)(turn())
    assert silent.typings == []


async def stream_without_typing(t: Turn) -> None:
    await t.stop_typing()  # a no-op when nothing is shown


async def test_an_adapter_failing_to_show_typing_changes_nothing() -> None:
    class Failing(FakeAdapter):
        async def typing(self, chat: Any) -> None:
            self.typings.append(chat)
            raise RuntimeError("platform hiccup")

    adapter = Failing(capabilities=Capabilities(typing=True))
    done: list[bool] = []

    async def produce(t: Turn) -> None:
        while not adapter.typings:
            await asyncio.sleep(0)
        done.append(True)

    await chain([Typing({"fake": adapter})], produce)(turn())
    assert done == [True]
