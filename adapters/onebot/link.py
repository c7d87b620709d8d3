"""The connection to a OneBot v11 implementation, whatever the mode: the contract, its errors, and what the
WebSocket modes share.

    Link (one per adapter)                      modes: forward.ForwardLink   ws client  -> implementation
      start()  bring it up (see each mode)             reverse.ReverseLink   implementation -> ws server
      call(action, params) -> data                     http.HttpLink         HTTP API + HTTP POST events
      stop()

Events go to the ``EventHandler`` given at construction, one at a time and in the order they arrived; the
handler returns once the event is committed (the HTTP POST mode answers the implementation only then). The
``on_ready`` hook runs each time the link (again) has both a way to call the API and a way to receive
events: the adapter backfills history then, since events sent while nobody listened are gone. ``on_lost``
hears, at once, that events may have stopped reaching paibot (a connection closed, the API unreachable).

Errors of ``call``:

    PlatformUnavailable   not connected, or the connection failed before the request was written: nothing
                          reached the implementation, the call may be repeated
    DeliveryUncertain     the request went out but no answer came (timeout, connection lost): a send may or
                          may not have happened
    ActionFailed          the implementation answered with a ``retcode`` other than 0 (and 1, "async")
    CredentialsRejected   the implementation refused the access token
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from bot.errors import CredentialsRejected, DeliveryUncertain, PaibotError, PlatformUnavailable

log = logging.getLogger("paibot.onebot")

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ReadyHook = Callable[[], Awaitable[None]]
LostHook = Callable[[], None]
AUTH_RETCODES = (1401, 1403)
RECONNECT_CAP_S = 60.0


class ActionFailed(PaibotError):
    """The implementation answered an action with a failure ``retcode``."""

    def __init__(self, action: str, retcode: int, message: str = "") -> None:
        super().__init__(f"{action} failed with retcode {retcode}" + (f": {message}" if message else ""))
        self.action = action
        self.retcode = retcode
        self.message = message


class Link(Protocol):
    async def start(self) -> None: ...

    async def call(self, action: str, params: dict[str, Any] | None = None) -> Any: ...

    async def stop(self) -> None: ...


def token_refused(where: str, detail: str = "") -> CredentialsRejected:
    """The one error (and log line) for a refused access token."""
    return CredentialsRejected(
        f"the OneBot implementation at {where} refused paibot's access token"
        f"{f' ({detail})' if detail else ''}: make adapters.onebot.access_token equal to the token in its "
        "network settings (NapCat: the 'token' of the WebSocket/HTTP entry; Lagrange: AccessToken in "
        "appsettings.json; LLOneBot: the token setting)"
    )


def result_of(action: str, answer: Any) -> Any:
    """The ``data`` of an API answer (``{"status", "retcode", "data"}``), or the error it stands for."""
    if not isinstance(answer, dict):
        raise ActionFailed(action, -1, "the answer is not a JSON object")
    retcode = answer.get("retcode", 0)
    if not isinstance(retcode, int) or isinstance(retcode, bool):
        retcode = -1
    if retcode in (0, 1) and answer.get("status", "ok") in ("ok", "async"):
        return answer.get("data")
    message = str(answer.get("wording") or answer.get("message") or answer.get("msg") or "")
    raise ActionFailed(action, retcode, message)


class Backoff:
    """Capped exponential backoff with equal jitter (waits in ``[d/2, d]``, ``d = min(cap, base * 2^n)``)."""

    def __init__(self, rng: random.Random, base_s: float = 1.0, cap_s: float = RECONNECT_CAP_S) -> None:
        self._rng, self.base_s, self.cap_s, self.failures = rng, base_s, cap_s, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0.0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


class WsChannel:
    """One OneBot WebSocket connection (either direction): API calls matched to answers by ``echo``, events
    queued for the handler in arrival order. ``run()`` reads until the socket closes; it never runs the
    handler itself, so a handler may call the API while the reader keeps reading.

    ``api`` / ``events`` say what the connection serves (split reverse mode: one or the other). A frame
    answering nobody with ``retcode`` 1401/1403 is how NapCat refuses a token on an open socket: it sets
    ``refused``, fails the calls in flight and ends the connection."""

    def __init__(
        self,
        ws: Any,
        where: str,
        events: asyncio.Queue[dict[str, Any]] | None,
        *,
        api: bool,
        timeout_s: float,
    ) -> None:
        self.ws = ws
        self.where = where
        self.api = api
        self._events = events
        self._timeout = timeout_s
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._echo = itertools.count(1)
        self.refused = False
        self.closed = asyncio.Event()

    async def run(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._dispatch(frame.data)
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    self._dispatch(frame.data.decode("utf-8", "replace"))
                elif frame.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        finally:
            self._fail_pending()
            self.closed.set()

    def _dispatch(self, text: str) -> None:
        try:
            obj = json.loads(text)
        except ValueError:
            log.warning("onebot: ignoring a frame that is not JSON from %s", self.where)
            return
        if not isinstance(obj, dict):
            return
        if "post_type" in obj:
            if self._events is not None:
                self._events.put_nowait(obj)
            return
        echo = obj.get("echo")
        fut = self._pending.pop(str(echo), None) if echo is not None else None
        if fut is not None:
            if not fut.done():
                fut.set_result(obj)
        elif obj.get("retcode") in AUTH_RETCODES:
            self.refused = True
            self._fail_pending()
            asyncio.get_running_loop().create_task(self.ws.close(), name="onebot-close-refused")

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(token_refused(self.where) if self.refused else _lost(self.where))

    async def call(self, action: str, params: dict[str, Any]) -> Any:
        if self.closed.is_set() or self.ws.closed:
            raise PlatformUnavailable(f"not connected to the OneBot implementation at {self.where}")
        echo = str(next(self._echo))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[echo] = fut
        try:
            await self.ws.send_str(
                json.dumps({"action": action, "params": params, "echo": echo}, ensure_ascii=False)
            )
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            self._pending.pop(echo, None)
            raise PlatformUnavailable(f"the connection to {self.where} is gone ({exc})") from exc
        try:
            async with asyncio.timeout(self._timeout):  # unlike wait_for, never swallows a cancellation
                answer = await fut
        except TimeoutError as exc:
            self._pending.pop(echo, None)
            raise DeliveryUncertain(
                f"{action}: no answer from {self.where} within {self._timeout:.0f}s"
            ) from exc
        return result_of(action, answer)

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        self._fail_pending()


def _lost(where: str) -> DeliveryUncertain:
    return DeliveryUncertain(f"the connection to {where} closed before it answered")


class EventPump:
    """Runs the event handler on queued events one at a time (a task per link); a failing handler is
    logged and the pump goes on (the event is lost to the live stream; history backfill may bring it)."""

    def __init__(self, handler: EventHandler) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._handler = handler
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=name)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handler(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad event must not stop the pump
                log.exception("onebot: could not handle a %s event", event.get("post_type"))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def offered_token(headers: Any, query: Any) -> str | None:
    """The access token a peer presented (``Authorization: Bearer|Token <t>`` or ``?access_token=``)."""
    auth = str(headers.get("Authorization", "")).strip()
    for scheme in ("Bearer ", "Token "):
        if auth.startswith(scheme):
            return auth[len(scheme) :].strip()
    q = query.get("access_token")
    return str(q) if q else None


def bound_port(runner: Any, configured: int) -> int:
    """The port an ``aiohttp`` runner actually listens on (``configured`` 0 picks a free one)."""
    for addr in getattr(runner, "addresses", ()):
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return configured
