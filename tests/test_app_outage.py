"""The composition root through a platform outage at start-up: the adapter whose platform is down keeps
connecting in the background while the others serve; its events and replies wait in the inbox (never
written off) and go out once it connects; a refused credential stops only that adapter, and start-up (or
``run_forever``) ends with the operator's instruction only when no adapter is left."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.errors import AdapterConfigError, CredentialsRejected, PlatformUnavailable
from bot.supervisor import CONNECTING, RUNNING, STOPPED
from tests.fakes import (
    FakeAdapter,
    FakeMemory,
    FlakyAdapter,
    GatedClock,
    ManualClock,
    WatchedAdapter,
    make_message,
)

TOKEN_HELP = "Telegram rejected the bot token: create one with @BotFather and put it in TELEGRAM_BOT_TOKEN."


def unreachable() -> PlatformUnavailable:
    return PlatformUnavailable("cannot reach the Telegram Bot API at http://127.0.0.1:9 (connection refused)")


def make_app(tmp_path: Path, adapters: dict, connect_clock: GatedClock) -> App:
    settings = parse_settings(f"bot: {{name: Pai, data_dir: '{tmp_path}', welcome: false}}\n")
    return App(settings, adapters=adapters, memory=FakeMemory(), skills=[], clock=ManualClock(),
               connect_clock=connect_clock)


def supervisor(app: App, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in app._supervisors if s.name == name)


async def test_the_web_group_answers_while_telegram_is_down_and_telegram_answers_once_it_is_back(
        tmp_path: Path) -> None:
    web = FakeAdapter("web")
    telegram = FlakyAdapter(unreachable(), unreachable(), platform="telegram")
    clock = GatedClock()
    app = make_app(tmp_path, {"web": web, "telegram": telegram}, clock)
    await app.start()
    try:
        assert app.services is not None
        assert supervisor(app, "telegram").state == CONNECTING
        assert "127.0.0.1:9" in app.services.unavailable["telegram"]
        await web.inject(make_message("@Pai are you there?", platform="web", mentions_me=True))
        (answer,) = await web.wait_sent(1)
        assert answer.chat.platform == "web"

        await clock.sleeping(1)
        await clock.release()  # still down on the second attempt
        await clock.sleeping(2)
        await clock.release()  # up on the third
        await asyncio.wait_for(_until(lambda: supervisor(app, "telegram").state == RUNNING), 10)
        assert app.services.adapters["telegram"] is telegram and "telegram" not in app.services.unavailable
        await telegram.inject(make_message("@Pai and here?", platform="telegram", mentions_me=True))
        (reply,) = await telegram.wait_sent(1)
        assert reply.chat.platform == "telegram"
    finally:
        await app.stop()


async def test_events_and_replies_of_a_platform_still_connecting_wait_for_it(tmp_path: Path) -> None:
    from bot.state import StateDB

    # What a crash during an outage leaves: a mention of the Telegram group, committed, never handled.
    state = StateDB(tmp_path / "paibot.db")
    await state.submit([make_message("@Pai what did we decide?", platform="telegram", mentions_me=True,
                                     msg_id="q1")])
    state.close()
    telegram = FlakyAdapter(*[unreachable()] * 3, platform="telegram")
    clock = GatedClock()
    app = make_app(tmp_path, {"web": FakeAdapter("web"), "telegram": telegram}, clock)
    await app.start()
    try:
        assert app.services is not None
        for n in range(1, 4):  # three failed attempts: the event waits, it is not the event's fault
            await clock.sleeping(n)
            assert await app.services.state.dead_letters() == []
            await clock.release()
        (reply,) = await telegram.wait_sent(1)
        assert reply.reply_to == "q1"
        await app.drain(10)
        assert await app.services.state.counts() == {"done": 1}
    finally:
        await app.stop()


async def test_sending_to_a_platform_still_connecting_is_a_wait_not_a_failure(tmp_path: Path) -> None:
    from bot.events import ChatRef, Outgoing

    telegram = FlakyAdapter(unreachable(), platform="telegram")
    app = make_app(tmp_path, {"web": FakeAdapter("web"), "telegram": telegram}, GatedClock())
    await app.start()
    try:
        assert app.services is not None
        with pytest.raises(PlatformUnavailable, match="127.0.0.1:9"):
            await app.services.send(Outgoing(ChatRef("telegram", "-100"), "a reminder"))
        with pytest.raises(PlatformUnavailable):
            app.services.adapter_for(ChatRef("telegram", "-100"))
    finally:
        await app.stop()


async def test_a_rejected_token_stops_only_that_adapter(tmp_path: Path) -> None:
    web = FakeAdapter("web")
    telegram = FlakyAdapter(CredentialsRejected(TOKEN_HELP), platform="telegram")
    app = make_app(tmp_path, {"web": web, "telegram": telegram}, GatedClock())
    await app.start()
    try:
        assert app.services is not None
        assert supervisor(app, "telegram").state == STOPPED
        assert app.services.unavailable["telegram"] == TOKEN_HELP
        await web.inject(make_message("@Pai still here?", platform="web", mentions_me=True))
        await web.wait_sent(1)
    finally:
        await app.stop()
    assert telegram.stops == 1


async def test_start_up_ends_with_the_instruction_when_no_adapter_is_left(tmp_path: Path) -> None:
    telegram = FlakyAdapter(CredentialsRejected(TOKEN_HELP), platform="telegram")
    app = make_app(tmp_path, {"telegram": telegram}, GatedClock())
    with pytest.raises(AdapterConfigError) as err:
        await app.start()
    assert str(err.value) == TOKEN_HELP
    assert app.services is None  # everything was released


async def test_every_refusal_is_listed_when_no_adapter_is_left(tmp_path: Path) -> None:
    adapters = {"telegram": FlakyAdapter(CredentialsRejected(TOKEN_HELP), platform="telegram"),
                "discord": FlakyAdapter(RuntimeError("boom"), platform="discord")}
    app = make_app(tmp_path, adapters, GatedClock())
    with pytest.raises(AdapterConfigError) as err:
        await app.start()
    text = str(err.value)
    assert f"- telegram: {TOKEN_HELP}" in text
    assert "- discord: the discord adapter could not start: boom" in text


async def test_run_forever_ends_when_the_last_adapter_is_refused_after_an_outage(tmp_path: Path) -> None:
    telegram = FlakyAdapter(unreachable(), CredentialsRejected(TOKEN_HELP), platform="telegram")
    clock = GatedClock()
    app = make_app(tmp_path, {"telegram": telegram}, clock)
    running = asyncio.create_task(app.run_forever(), name="app")
    await clock.sleeping(1)  # connecting in the background: the process keeps running
    assert not running.done()
    await clock.release()  # the platform is back and refuses the token
    with pytest.raises(AdapterConfigError, match="BotFather"):
        await asyncio.wait_for(running, 20)
    assert app.services is None


async def test_stop_while_an_adapter_is_connecting_leaves_no_task_behind(tmp_path: Path) -> None:
    telegram = FlakyAdapter(*[unreachable()] * 100, platform="telegram")
    clock = GatedClock()
    app = make_app(tmp_path, {"web": FakeAdapter("web"), "telegram": telegram}, clock)
    await app.start()
    await clock.sleeping(1)
    await app.stop()
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("connect:")] == []
    assert telegram.stops == 1


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_signal_during_a_slow_start_ends_it_at_once(tmp_path: Path) -> None:
    import os
    import signal

    class Hanging(FakeAdapter):
        """A platform that accepts the connection and never answers."""

        def __init__(self) -> None:
            super().__init__("telegram")
            self.started = asyncio.Event()

        async def start(self, sink) -> None:  # type: ignore[no-untyped-def]
            self.started.set()
            await asyncio.Event().wait()

    hanging = Hanging()
    app = make_app(tmp_path, {"web": FakeAdapter("web"), "telegram": hanging}, GatedClock())
    running = asyncio.create_task(app.run_forever(), name="app")
    await asyncio.wait_for(hanging.started.wait(), 10)
    os.kill(os.getpid(), signal.SIGTERM)  # run_forever's handler takes it
    await asyncio.wait_for(running, 20)
    assert app.services is None
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("connect:")] == []


async def test_a_platform_lost_while_running_holds_its_replies_until_it_is_back(tmp_path: Path) -> None:
    from bot.events import ChatRef, Outgoing

    discord = WatchedAdapter(platform="discord")
    clock = GatedClock()
    app = make_app(tmp_path, {"web": FakeAdapter("web"), "discord": discord}, clock)
    await app.start()
    try:
        assert app.services is not None
        discord.lose(PlatformUnavailable("cannot reach Discord's gateway at wss://gateway.example (refused)"))
        await clock.sleeping(1)
        assert "discord" in app.services.unavailable and "discord" not in app.services.adapters
        with pytest.raises(PlatformUnavailable, match="lost its connection"):
            await app.services.send(Outgoing(ChatRef("discord", "42"), "a reminder"))
        await clock.release()
        services = app.services
        await asyncio.wait_for(_until(lambda: "discord" in services.adapters), 10)
        await app.services.send(Outgoing(ChatRef("discord", "42"), "a reminder"))
        assert [o.text for o in discord.sent] == ["a reminder"]
    finally:
        await app.stop()
