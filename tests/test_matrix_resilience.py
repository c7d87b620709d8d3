"""The Matrix adapter against a misbehaving homeserver: rate limits, 5xx, revoked tokens, a failing inbox, a
homeserver that is down when the bot starts, and refused credentials.

A small aiohttp server on loopback speaks just enough of the client-server API (login, profile, sync, send)
and answers from a script, so each failure mode is reproduced exactly; the adapter runs its unmodified nio
client against it. Sleeps are recorded instead of slept, so the tests assert the waits without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web

from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.retry import RetryPolicy
from adapters.matrix.sync import HORIZON, NEXT_BATCH, SyncOptions
from adapters.matrix.config import MatrixAdapterSettings
from bot.errors import AdapterConfigError, CredentialsRejected, DeliveryError, PlatformUnavailable
from bot.events import ChatRef, Message, Outgoing
from tests.matrix_helpers import RecordingSink

ROOM = "!room:fake.test"
BOT = "@pai:fake.test"
Reply = tuple[int, Any]  # (status, JSON body or raw text)


def rate_limited(ms: int) -> Reply:
    return 429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": ms}


def sync_body(next_batch: str, events: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    room = {"timeline": {"events": list(events), "limited": False, "prev_batch": "p0"},
            "state": {"events": []}, "ephemeral": {"events": []}, "account_data": {"events": []}}
    rooms = {"join": {ROOM: room} if events else {}, "invite": {}, "leave": {}}
    return {"next_batch": next_batch, "rooms": rooms}


def text_event(event_id: str, body: str) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": event_id, "sender": "@alice:fake.test",
            "origin_server_ts": 1_800_000_000_000, "content": {"msgtype": "m.text", "body": body}}


class FakeHomeserver:
    """Scripted replies per endpoint; once a script is used up, sync long-polls briefly and sends succeed."""

    def __init__(self) -> None:
        self.login_script: list[Reply] = []
        self.sync_script: list[Reply] = []
        self.send_script: list[Reply] = []
        self.sync_since: list[str | None] = []
        self.send_txns: list[str] = []
        self.logins = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/_matrix/client/v3/login", self._login)
        app.router.add_get("/_matrix/client/v3/account/whoami", self._whoami)
        app.router.add_get("/_matrix/client/v3/profile/{user}/displayname", self._displayname)
        app.router.add_get("/_matrix/client/v3/sync", self._sync)
        app.router.add_put("/_matrix/client/v3/rooms/{room}/send/{type}/{txn}", self._send)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _reply(reply: Reply) -> web.Response:
        status, body = reply
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)

    async def _login(self, request: web.Request) -> web.Response:
        self.logins += 1
        if self.login_script:
            return self._reply(self.login_script.pop(0))
        data = await request.json()
        return web.json_response({"user_id": BOT, "access_token": f"tok{self.logins}",
                                  "device_id": data.get("device_id") or "DEV1"})

    async def _whoami(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer good-token":
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid token"}, status=401)
        return web.json_response({"user_id": BOT, "device_id": "DEV9"})

    async def _displayname(self, request: web.Request) -> web.Response:
        return web.json_response({"displayname": "Pai"})

    async def _sync(self, request: web.Request) -> web.Response:
        self.sync_since.append(request.query.get("since"))
        if self.sync_script:
            return self._reply(self.sync_script.pop(0))
        await asyncio.sleep(0.05)
        return web.json_response(sync_body(request.query.get("since") or "s-idle"))

    async def _send(self, request: web.Request) -> web.Response:
        self.send_txns.append(request.match_info["txn"])
        if self.send_script:
            return self._reply(self.send_script.pop(0))
        return web.json_response({"event_id": f"$sent{len(self.send_txns)}"})


class RecordedSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def hs() -> AsyncIterator[FakeHomeserver]:
    server = FakeHomeserver()
    await server.start()
    yield server
    await server.stop()


def adapter_for(base_url: str, sleep: RecordedSleep, **cfg: Any) -> MatrixAdapter:
    base: dict[str, Any] = {"enabled": True, "homeserver": base_url, "user_id": BOT, "password": "pw",
                            "allowed_inviters": ()}
    settings = MatrixAdapterSettings(**{**base, **cfg})
    return MatrixAdapter(settings, options=SyncOptions(sync_timeout_ms=100), retry=RetryPolicy(sleep=sleep))


async def started(hs: FakeHomeserver, sink: Any, sleep: RecordedSleep) -> MatrixAdapter:
    adapter = adapter_for(hs.base_url, sleep)
    await adapter.start(sink)
    return adapter


async def resumed_sink() -> RecordingSink:
    """A sink that already synced once (so the next batch is not treated as a first start)."""
    sink = RecordingSink()
    await sink.submit([], cursor_key=NEXT_BATCH, cursor="s0")
    await sink.submit([], cursor_key=HORIZON, cursor="0")
    return sink


async def test_sync_honours_rate_limits_and_retries_5xx_with_backoff(hs: FakeHomeserver) -> None:
    hs.sync_script = [rate_limited(1500), (502, "<html>bad gateway</html>"), (500, {"errcode": "M_UNKNOWN"}),
                      (200, sync_body("s1", [text_event("$a", "hello")]))]
    sink, sleep = await resumed_sink(), RecordedSleep()
    adapter = await started(hs, sink, sleep)
    try:
        (msg,) = await sink.wait_for(lambda m: m.id == "$a")
        assert msg.text == "hello"
        await adapter.synced.wait()
    finally:
        await adapter.stop()
    assert sink.cursors[NEXT_BATCH] == "s1"
    assert hs.sync_since[:4] == ["s0"] * 4  # every failed attempt retried the same token
    assert sleep.delays[0] >= 1.5  # retry_after_ms honoured
    assert len(sleep.delays) >= 3 and all(d > 0 for d in sleep.delays[:3])  # never a hot loop


async def test_a_failing_inbox_commit_replays_the_batch_with_the_same_token(hs: FakeHomeserver) -> None:
    class FlakySink(RecordingSink):
        fail = True

        async def submit(self, events: Sequence[Message], **kw: Any) -> int:
            if events and self.fail:
                self.fail = False
                raise OSError("disk full")
            return await super().submit(events, **kw)

    sink = FlakySink()
    await sink.submit([], cursor_key=NEXT_BATCH, cursor="s0")
    await sink.submit([], cursor_key=HORIZON, cursor="0")
    hs.sync_script = [(200, sync_body("s1", [text_event("$a", "kept")])),
                      (200, sync_body("s1", [text_event("$a", "kept")]))]
    sleep = RecordedSleep()
    adapter = await started(hs, sink, sleep)
    try:
        await sink.wait_for(lambda m: m.id == "$a")
    finally:
        await adapter.stop()
    assert hs.sync_since[:2] == ["s0", "s0"]  # the token was not used before the commit succeeded
    assert sink.texts(ROOM) == ["kept"] and sleep.delays


async def test_revoked_token_logs_in_again_with_the_same_device(hs: FakeHomeserver) -> None:
    hs.sync_script = [(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "revoked"}),
                      (200, sync_body("s1", [text_event("$a", "after relogin")]))]
    sink = await resumed_sink()
    adapter = await started(hs, sink, RecordedSleep())
    try:
        await sink.wait_for(lambda m: m.id == "$a")
    finally:
        await adapter.stop()
    assert hs.logins == 2
    assert sink.cursors["matrix:device_id"] == "DEV1"


async def test_send_retries_rate_limits_and_5xx_with_the_same_transaction_id(hs: FakeHomeserver) -> None:
    hs.sync_script = [(200, sync_body("s1"))]
    sleep = RecordedSleep()
    adapter = await started(hs, await resumed_sink(), sleep)
    try:
        hs.send_script = [rate_limited(800), (503, "<html>unavailable</html>")]
        ref = await adapter.send(Outgoing(ChatRef("matrix", ROOM), "hi", idempotency_key="matrix:$t"))
    finally:
        await adapter.stop()
    assert ref.message_id == "$sent3"
    assert len(hs.send_txns) == 3 and len(set(hs.send_txns)) == 1
    assert 0.8 <= sleep.delays[-2] <= 300 and sleep.delays[-1] > 0


async def test_send_refused_for_good_is_a_delivery_error_without_retries(hs: FakeHomeserver) -> None:
    hs.sync_script = [(200, sync_body("s1"))]
    adapter = await started(hs, await resumed_sink(), RecordedSleep())
    try:
        hs.send_script = [(403, {"errcode": "M_FORBIDDEN", "error": "not in room"})]
        with pytest.raises(DeliveryError, match="M_FORBIDDEN"):
            await adapter.send(Outgoing(ChatRef("matrix", ROOM), "hi"))
        assert len(hs.send_txns) == 1
        hs.send_script = [(500, {"errcode": "M_UNKNOWN"})] * 5
        with pytest.raises(DeliveryError):
            await adapter.send(Outgoing(ChatRef("matrix", ROOM), "hi"))
        assert len(hs.send_txns) == 6  # bounded: five attempts, then the core hears about it
    finally:
        await adapter.stop()



# --------------------------------------------------------------------------- start-up: outage or refusal


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_homeserver_down_at_start_is_an_outage_naming_it_and_a_later_start_connects() -> None:
    port = closed_port()
    sleep = RecordedSleep()
    adapter = adapter_for(f"http://127.0.0.1:{port}", sleep)
    sink = await resumed_sink()
    with pytest.raises(PlatformUnavailable) as err:
        await adapter.start(sink)
    assert f"cannot reach the Matrix homeserver at http://127.0.0.1:{port} (login" in str(err.value)
    assert sleep.delays == []  # one attempt: the retries of a start belong to the supervisor
    hs = FakeHomeserver()
    await hs.start(port)  # the homeserver is back
    try:
        hs.sync_script = [(200, sync_body("s1", [text_event("$a", "back")]))]
        await adapter.start(sink)
        await sink.wait_for(lambda m: m.id == "$a")
        await adapter.stop()
    finally:
        await hs.stop()


@pytest.mark.parametrize("reply", [(502, "<html>bad gateway</html>"), (503, {"errcode": "M_UNKNOWN"}),
                                   rate_limited(2500)])
async def test_a_homeserver_failing_the_login_is_an_outage(hs: FakeHomeserver, reply: Reply) -> None:
    hs.login_script = [reply]
    adapter = adapter_for(hs.base_url, RecordedSleep())
    with pytest.raises(PlatformUnavailable, match="is not answering") as err:
        await adapter.start(await resumed_sink())
    assert err.value.retry_after == (2.5 if reply[0] == 429 else None)
    assert hs.logins == 1
    await adapter.start(await resumed_sink())  # the next attempt logs in
    await adapter.stop()


async def test_a_refused_password_stops_with_the_instruction(hs: FakeHomeserver) -> None:
    hs.login_script = [(403, {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"})]
    with pytest.raises(CredentialsRejected) as err:
        await adapter_for(hs.base_url, RecordedSleep()).start(await resumed_sink())
    assert "refused the login of @pai:fake.test" in str(err.value)
    assert "adapters.matrix.password" in str(err.value)


async def test_a_rejected_access_token_stops_with_the_instruction(hs: FakeHomeserver) -> None:
    adapter = adapter_for(hs.base_url, RecordedSleep(), password="", access_token="revoked-token")
    with pytest.raises(CredentialsRejected, match="rejected adapters.matrix.access_token") as err:
        await adapter.start(await resumed_sink())
    assert "revoked-token" not in str(err.value)
    ok = adapter_for(hs.base_url, RecordedSleep(), password="", access_token="good-token")
    await ok.start(await resumed_sink())
    await ok.stop()


async def test_a_server_that_is_not_a_homeserver_is_an_operator_error(hs: FakeHomeserver) -> None:
    hs.login_script = [(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})]
    with pytest.raises(AdapterConfigError, match="adapters.matrix.homeserver") as err:
        await adapter_for(hs.base_url, RecordedSleep()).start(await resumed_sink())
    assert not isinstance(err.value, CredentialsRejected)
