"""HTTP mode: API calls are HTTP requests to the implementation (``POST <url>/<action>``, JSON, with
``Authorization: Bearer <access_token>``); events arrive as HTTP POSTs to paibot
(``http://<listen>:<port><path>``) signed with ``X-Signature: sha1=<HMAC-SHA1 of the body>``.

The signing key is ``adapters.onebot.secret``, or the access token when no secret is set (NapCat signs with
its HTTP client's token). An unsigned or wrongly signed POST gets 401/403 and one error line per series. An
event is answered (204, no quick operation) only once it is committed; a failure answers 500.

``start`` calls ``get_login_info`` once (one attempt: unreachable -> PlatformUnavailable; HTTP 401/403 ->
CredentialsRejected) and opens the event listener. The link is ready from then on; after an API call fails
for want of a connection and a later one succeeds, and when the implementation reports ``lifecycle/enable``
(it started), ``on_ready`` runs again so the adapter catches up on history.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import aiohttp
from aiohttp import web

from adapters.onebot.link import (
    ActionFailed,
    EventHandler,
    LostHook,
    ReadyHook,
    bearer,
    bound_port,
    log,
    result_of,
    token_refused,
)
from bot.errors import AdapterConfigError, DeliveryUncertain, PlatformUnavailable

MAX_EVENT_BYTES = 16 * 1024 * 1024


def signature(key: str, body: bytes) -> str:
    return "sha1=" + hmac.new(key.encode(), body, hashlib.sha1).hexdigest()


class HttpLink:
    def __init__(
        self,
        url: str,
        token: str,
        secret: str,
        listen: str,
        port: int,
        path: str,
        on_event: EventHandler,
        on_ready: ReadyHook,
        *,
        call_timeout_s: float = 30.0,
        on_lost: LostHook = lambda: None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._key = secret or token
        self._listen, self._port = listen, port
        self._path = "/" + path.strip("/")
        self._on_event = on_event
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._timeout = call_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._down = False  # the last call could not reach the implementation
        self._refusals = 0
        self._order = asyncio.Lock()  # events are handled one at a time, in arrival order
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = port

    @property
    def where(self) -> str:
        return f"http://{self._listen}:{self.port}{self._path}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout, connect=15.0)
        )
        self._down = False
        try:
            await self._request("get_login_info", {})
            await self._listen_for_events()
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._spawn_ready()

    async def _listen_for_events(self) -> None:
        app = web.Application(client_max_size=MAX_EVENT_BYTES)
        app.router.add_post(self._path, self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._listen, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise AdapterConfigError(
                f"cannot listen for OneBot events on {self._listen}:{self._port} ({exc}); pick a free "
                "adapters.onebot.port"
            ) from exc
        self._runner = runner
        self.port = bound_port(runner, self._port)
        log.info("onebot: calling the API at %s; receiving events on %s", self.url, self.where)

    async def _request(self, action: str, params: dict[str, Any]) -> Any:
        session = self._session
        if session is None:
            raise PlatformUnavailable("the OneBot adapter is not running")
        target = f"{self.url}/{action}"
        body = json.dumps(params, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **bearer(self._token)}
        try:
            async with session.post(target, data=body, headers=headers) as resp:
                if resp.status in (401, 403):
                    raise token_refused(self.url, f"HTTP {resp.status}")
                if resp.status == 404:
                    raise ActionFailed(action, 1404, "the implementation does not offer this action")
                if resp.status >= 500:
                    raise DeliveryUncertain(f"{action}: the OneBot HTTP API answered {resp.status}")
                if resp.status != 200:
                    raise ActionFailed(action, 1400, f"HTTP {resp.status}")
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            # Nothing was answered; a request the server dropped unread is safe to repeat, one it dropped
            # after reading may have acted: only a connection that never opened is "unavailable".
            if isinstance(exc, aiohttp.ClientConnectorError):
                if not self._down:
                    self._on_lost()
                self._down = True
                raise PlatformUnavailable(f"cannot reach the OneBot HTTP API at {self.url} ({exc})") from exc
            raise DeliveryUncertain(f"{action}: the OneBot HTTP API closed the connection") from exc
        except TimeoutError as exc:
            raise DeliveryUncertain(
                f"{action}: no answer from {self.url} within {self._timeout:.0f}s"
            ) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise DeliveryUncertain(f"{action}: a broken answer from {self.url} ({exc})") from exc
        if self._down:
            self._down = False
            log.info("onebot: the HTTP API at %s answers again", self.url)
            self._spawn_ready()
        return result_of(action, answer)

    def _spawn_ready(self) -> None:
        task = asyncio.create_task(self._announce(), name="onebot-ready")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self) -> None:
        try:
            await self._on_ready()
        except Exception:  # noqa: BLE001 - catching up failing must not stop the adapter
            log.exception("onebot: catching up on history failed")

    async def call(self, action: str, params: dict[str, Any] | None = None) -> Any:
        return await self._request(action, params or {})

    def _signed(self, request: web.Request, body: bytes) -> web.Response | None:
        if not self._key:
            return None
        offered = request.headers.get("X-Signature", "")
        if offered and hmac.compare_digest(offered.lower(), signature(self._key, body)):
            self._refusals = 0
            return None
        self._refusals += 1
        if self._refusals == 1:
            log.error(
                "onebot: refused an event POST from %s: %s. The implementation must sign with the same key "
                "as adapters.onebot.secret (or, without a secret, adapters.onebot.access_token)",
                request.remote,
                "it is not signed" if not offered else "its signature does not match",
            )  # fmt: skip
        return web.Response(status=401 if not offered else 403)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        refused = self._signed(request, body)
        if refused is not None:
            return refused
        try:
            event = json.loads(body)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            log.warning("onebot: ignoring an event POST that is not a JSON object")
            return web.Response(status=400)
        if event.get("meta_event_type") == "lifecycle" and event.get("sub_type") == "enable":
            self._spawn_ready()
        async with self._order:
            try:
                await self._on_event(event)
            except Exception:  # noqa: BLE001 - tell the implementation; it may not resend, history may
                log.exception("onebot: could not handle a %s event", event.get("post_type"))
                return web.Response(status=500)
        return web.Response(status=204)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
