"""Streamed replies through the member pipeline (App + FakeAdapter + a streaming ScriptedLLM + ManualClock).

The model's text arrives in pieces while the manual clock moves on a fixed step per piece, so every timing
decision (first message, throttled edits) depends on the clock only: the assertions are about behaviour."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable

import pytest

from bot.app import App
from bot.brain import APOLOGY
from bot.config import parse_settings
from bot.errors import LLMFatal
from bot.events import ChatRef, Outgoing, SentRef
from bot.middlewares.welcome import WELCOME
from bot.ports import Capabilities
from bot.streaming import EDIT_INTERVAL_S, FIRST_CHARS, INTERRUPTED
from tests.fakes import CutStream, FakeAdapter, FakeMemory, ManualClock, ScriptedLLM, make_message

ANSWER = (
    "The group settled on Saturday for the picnic. Bob will bring the sandwiches and Carol the lemonade. "
    "Alice asked about rain: if it rains, everyone meets at the lake pavilion instead, which has a roof. "
    "Dave offered to drive anyone who needs a lift; he leaves from the station at nine in the morning."
)
STEP_S = 0.4  # manual seconds between two pieces of the model's text


class TimedAdapter(FakeAdapter):
    """A FakeAdapter that logs every platform call with the manual clock's time, and can 'crash' (raise
    CancelledError, as a SIGKILL would stop everything) on an edit matching ``crash_on_edit``."""

    def __init__(self, clock: ManualClock, capabilities: Capabilities | None = None) -> None:
        super().__init__(capabilities=capabilities or Capabilities(max_text_length=4000, edit=True, typing=True))
        self.clock = clock
        self.log: list[tuple[str, float, str]] = []
        self.crash_on_edit: Callable[[str], bool] | None = None
        self.crashed = asyncio.Event()
        self._t0 = clock.now()

    def _at(self) -> float:
        return (self.clock.now() - self._t0).total_seconds()

    async def send(self, out: Outgoing) -> SentRef:
        ref = await super().send(out)
        self.log.append(("send", self._at(), out.text))
        return ref

    async def edit(self, ref: SentRef, text: str) -> None:
        if self.crash_on_edit is not None and self.crash_on_edit(text):
            self.crash_on_edit = None
            self.crashed.set()
            raise asyncio.CancelledError()
        await super().edit(ref, text)
        self.log.append(("edit", self._at(), text))

    async def typing(self, chat: ChatRef) -> None:
        await super().typing(chat)
        self.log.append(("typing", self._at(), ""))

    def writes(self) -> list[tuple[str, float, str]]:
        return [entry for entry in self.log if entry[0] != "typing"]


def settings_for(tmp_path, stream: bool = True, welcome: bool = False, extra: str = ""):
    return parse_settings(
        f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: {str(welcome).lower()}}}\n"
        f"llm: {{stream: {str(stream).lower()}, retry_base_s: 0.01, retry_max_s: 0.01, max_retries: 1}}\n" + extra
    )


@pytest.fixture
async def world(tmp_path):
    """Builds a running App; yields a builder returning (app, adapter, llm, memory)."""
    apps: list[App] = []

    async def build(script, *, stream=True, welcome=False, capabilities=None, chunk_chars=10, memory=None):
        clock = ManualClock()

        async def tick() -> None:
            clock.advance(STEP_S)

        llm = ScriptedLLM(script, chunk_chars=chunk_chars, between_chunks=tick)
        adapter = TimedAdapter(clock, capabilities)
        mem = memory or FakeMemory()
        app = App(settings_for(tmp_path, stream, welcome), llm=llm, adapters={"fake": adapter}, memory=mem,
                  skills=[], clock=clock)
        await app.start()
        app.ledger_payloads = keep_ledger_payloads(app)
        apps.append(app)
        return app, adapter, llm, mem

    yield build
    for app in apps:
        await app.stop()


async def ask(app: App, adapter: FakeAdapter, text: str = "@Pai what did we decide about the picnic?"):
    msg = make_message(text, author="alice", name="Alice")
    await adapter.inject(msg)
    await app.drain()
    return msg


def keep_ledger_payloads(app: App) -> dict[str, str]:
    """What the reply ledger was last given for each event (it empties a reply's payload once sent)."""
    state = app.services.state
    written: dict[str, str] = {}
    claim, update = state.claim_reply, state.update_reply_payload

    async def claim_reply(event_id: str, payload: str = "") -> bool:
        written[event_id] = payload
        return await claim(event_id, payload)

    async def update_reply_payload(event_id: str, payload: str) -> None:
        written[event_id] = payload
        await update(event_id, payload)

    state.claim_reply, state.update_reply_payload = claim_reply, update_reply_payload
    return written


async def ledger(app: App, event_id: str) -> tuple[str | None, dict]:
    """The reply's state and its last payload; a sent reply's stored payload is already empty."""
    state = app.services.state
    now = await state.reply_payload(event_id)
    status = await state.reply_state(event_id)
    if status == "sent":
        assert now == ""
    return status, json.loads(app.ledger_payloads[event_id])


# --------------------------------------------------------------------------- the streamed answer


async def test_one_message_is_sent_then_edited_at_most_every_interval_and_ends_with_the_whole_answer(world):
    app, adapter, llm, mem = await world([ANSWER])
    msg = await ask(app, adapter)

    assert llm.calls[0]["stream"] is True
    [first] = adapter.sent  # exactly one message for the event
    assert first.reply_to == msg.id and first.idempotency_key == msg.event_id
    assert len(first.text) >= FIRST_CHARS and ANSWER.startswith(first.text)
    texts = [text for _, text in adapter.edits]
    assert texts[-1] == ANSWER
    assert all(ANSWER.startswith(t) for t in texts)  # every edit shows a longer prefix of the answer
    assert all(ref.message_id == "bot-1" for ref, _ in adapter.edits)
    pieces = -(-len(ANSWER) // 10)
    assert 3 <= len(texts) < pieces // 2  # throttled: far fewer edits than pieces of text
    times = [t for _, t, _ in adapter.writes()]
    assert all(b - a >= EDIT_INTERVAL_S - 1e-9 for a, b in itertools.pairwise(times))
    # The ledger holds the final payload; the reply counts as sent; memory has the whole answer.
    state, payload = await ledger(app, msg.event_id)
    assert state == "sent" and payload["text"] == ANSWER and payload["stream"]["ref"] == "bot-1"
    assert payload["resendable"] is False
    assert mem.texts("fake:g1")[-1] == ANSWER


async def test_typing_shows_until_the_first_message_and_stops_there(world):
    app, adapter, _, _ = await world([ANSWER])
    await ask(app, adapter)
    kinds = [kind for kind, _, _ in adapter.log]
    assert kinds[0] == "typing"
    assert "typing" not in kinds[kinds.index("send"):]


async def test_a_short_answer_is_sent_once_as_an_ordinary_reply_without_edits(world):
    app, adapter, _, _ = await world(["Saturday."])
    msg = await ask(app, adapter)
    assert [o.text for o in adapter.sent] == ["Saturday."] and adapter.edits == []
    state, payload = await ledger(app, msg.event_id)
    assert state == "sent" and payload["text"] == "Saturday." and "stream" not in payload


async def test_slow_text_is_shown_after_the_first_wait_even_when_short(world):
    app, adapter, _, _ = await world(["Saturday, at the lake, with sandwiches."], chunk_chars=3)
    await ask(app, adapter)
    [first] = adapter.sent
    assert len(first.text) < FIRST_CHARS  # sent because 1.5 manual seconds of text had passed
    assert adapter.edits[-1][1] == "Saturday, at the lake, with sandwiches."


async def test_a_retry_after_a_cut_stream_ends_in_one_message_with_the_whole_answer(world):
    app, adapter, llm, _ = await world([CutStream(ANSWER[:90]), ANSWER])
    msg = await ask(app, adapter)
    assert len(llm.calls) == 2
    assert len(adapter.sent) == 1 and adapter.sent[0].text == ANSWER[: len(adapter.sent[0].text)]
    assert adapter.edits[-1][1] == ANSWER
    assert (await ledger(app, msg.event_id))[1]["text"] == ANSWER


async def test_when_the_model_fails_after_partial_text_the_message_ends_as_the_apology(world):
    cut = CutStream(ANSWER[:120], LLMFatal("upstream says: key sk-live-123 revoked at node eu-west-7"))
    app, adapter, _, _ = await world([cut])
    msg = await ask(app, adapter)
    assert len(adapter.sent) == 1 and ANSWER.startswith(adapter.sent[0].text)
    assert adapter.edits[-1][1] == APOLOGY
    shown = [o.text for o in adapter.sent] + [t for _, t in adapter.edits]
    assert not any("sk-live" in t or "eu-west" in t or "upstream" in t for t in shown)
    state, payload = await ledger(app, msg.event_id)
    assert state == "sent" and payload["text"] == APOLOGY


async def test_an_answer_longer_than_the_platform_allows_continues_in_follow_up_messages(world):
    caps = Capabilities(max_text_length=120, edit=True)
    app, adapter, _, _ = await world([ANSWER], capabilities=caps)
    msg = await ask(app, adapter)
    first, *rest = adapter.sent
    assert all(len(t) <= 120 for _, t in adapter.edits) and len(first.text) <= 120
    head = adapter.edits[-1][1]
    assert head.endswith(".")  # cut at a sentence break
    [follow_up] = rest  # the rest goes as one ordinary Outgoing; the real adapters split it further
    assert follow_up.reply_to is None and follow_up.idempotency_key == f"{msg.event_id}:rest"
    assert f"{head} {follow_up.text}" == ANSWER
    assert (await ledger(app, msg.event_id))[1]["text"] == ANSWER


async def test_the_welcome_note_is_appended_to_the_first_answer_only_once(world):
    app, adapter, _, _ = await world([ANSWER, ANSWER.replace("Saturday", "Sunday")], welcome=True)
    await ask(app, adapter)
    await ask(app, adapter, "@Pai and the day after?")
    note = WELCOME.format(name="Pai")
    assert len(adapter.sent) == 2 and all(note not in o.text for o in adapter.sent)  # not while streaming
    with_note = [(ref.message_id, t) for ref, t in adapter.edits if note in t]
    assert with_note == [("bot-1", f"{ANSWER}\n\n{note}")]  # the first answer's final edit, only
    assert adapter.edits[-1][0].message_id == "bot-2"
    assert adapter.edits[-1][1] == ANSWER.replace("Saturday", "Sunday")


async def test_a_replayed_event_gets_one_streamed_reply(world):
    app, adapter, llm, _ = await world([ANSWER])
    msg = make_message("@Pai what did we decide?")
    assert await adapter.inject(msg) == 1
    assert await adapter.inject(msg) == 0
    await app.drain()
    assert len(adapter.sent) == 1 and len(llm.calls) == 1


# --------------------------------------------------------------------------- when not to stream


async def test_with_stream_off_the_reply_is_sent_whole_as_before(world):
    app, adapter, llm, _ = await world([ANSWER], stream=False)
    await ask(app, adapter)
    assert [o.text for o in adapter.sent] == [ANSWER] and adapter.edits == []
    assert "stream" not in llm.calls[0]


async def test_a_platform_that_cannot_edit_gets_the_whole_reply(world):
    app, adapter, llm, _ = await world([ANSWER], capabilities=Capabilities(edit=False))
    await ask(app, adapter)
    assert [o.text for o in adapter.sent] == [ANSWER] and adapter.edits == []
    assert "stream" not in llm.calls[0]


async def test_commands_are_not_streamed(world):
    app, adapter, llm, _ = await world([ANSWER])
    await ask(app, adapter, "/help")
    assert len(adapter.sent) == 1 and adapter.edits == [] and llm.calls == []


async def test_a_refused_first_send_falls_back_to_one_ordinary_reply(world):
    app, adapter, _, _ = await world([ANSWER], welcome=True)
    original = adapter.send
    calls = {"n": 0}

    async def flaky(out: Outgoing) -> SentRef:
        calls["n"] += 1
        if calls["n"] == 1:
            from bot.errors import DeliveryError

            raise DeliveryError("the platform hiccuped")
        return await original(out)

    adapter.send = flaky  # type: ignore[method-assign]
    msg = await ask(app, adapter)
    assert [o.text for o in adapter.sent] == [f"{ANSWER}\n\n{WELCOME.format(name='Pai')}"]  # welcome kept
    assert adapter.edits == []
    assert (await ledger(app, msg.event_id))[0] == "sent"


# --------------------------------------------------------------------------- crashes


def ticking_llm(clock: ManualClock, script: list[str]) -> ScriptedLLM:
    async def tick() -> None:
        clock.advance(STEP_S)

    return ScriptedLLM(script, chunk_chars=10, between_chunks=tick)


async def _crash_while_streaming(tmp_path, adapter: TimedAdapter, clock: ManualClock, llm: ScriptedLLM) -> None:
    app = App(settings_for(tmp_path), llm=llm, adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=clock)
    await app.start()
    await adapter.inject(make_message("@Pai what did we decide about the picnic?", msg_id="q1"))
    await asyncio.wait_for(adapter.crashed.wait(), 10)
    await app.stop(grace_s=0.1)


async def _restart(tmp_path, adapter: TimedAdapter, clock: ManualClock) -> ScriptedLLM:
    llm = ScriptedLLM(["must not be asked again"])
    app = App(settings_for(tmp_path), llm=llm, adapters={"fake": adapter}, memory=FakeMemory(), skills=[],
              clock=clock)
    await app.start()
    try:
        await app.drain()
    finally:
        await app.stop()
    return llm


async def test_a_restart_during_the_final_edit_completes_the_reply_without_asking_the_model_again(tmp_path):
    clock = ManualClock()
    caps = Capabilities(max_text_length=120, edit=True, idempotent_sends=True)
    adapter = TimedAdapter(clock, caps)
    head = "The group settled on Saturday for the picnic. Bob will bring the sandwiches and Carol the lemonade."
    # While streaming, the head is shown once (later text past the limit shows the same head, so no edit);
    # the final edit puts it there a second time: the crash hits that one.
    adapter.crash_on_edit = lambda text: text == head and any(t == head for _, t in adapter.edits)
    await _crash_while_streaming(tmp_path, adapter, clock, ticking_llm(clock, [ANSWER]))
    assert len(adapter.sent) == 1  # the follow-up had not gone out yet

    llm = await _restart(tmp_path, adapter, clock)
    assert llm.calls == []
    assert adapter.edits[-1][1] == head
    assert [o.text for o in adapter.sent[1:]] == [ANSWER[len(head) + 1 :]]


async def test_a_restart_mid_answer_marks_the_message_as_interrupted(tmp_path):
    clock = ManualClock()
    adapter = TimedAdapter(clock)
    adapter.crash_on_edit = lambda text: len(adapter.edits) >= 2  # the third edit never happens
    await _crash_while_streaming(tmp_path, adapter, clock, ticking_llm(clock, [ANSWER]))
    assert len(adapter.sent) == 1 and adapter.edits[-1][1] != ANSWER

    llm = await _restart(tmp_path, adapter, clock)
    assert llm.calls == [] and len(adapter.sent) == 1
    ref, text = adapter.edits[-1]
    assert (ref.message_id, text) == ("bot-1", INTERRUPTED)
