"""Reverse WebSocket: the implementation connects to paibot (``ws://<listen>:<port><path>``).

It connects as a Universal client (API and events on one connection) or, in split mode, as two clients: an
API one and an Event one, told apart by the ``X-Client-Role`` header (``Universal`` / ``API`` / ``Event``)
or, for implementations that send none, by a path ending in ``/api`` or ``/event``. ``X-Self-ID`` names
the QQ account. The access token arrives as ``Authorization: Bearer <token>`` (or ``?access_token=``); a
wrong one gets HTTP 403 (none at all: 401) before the upgrade and one error line per series of refusals.

``start`` only opens the listening socket (a port that cannot be bound is an operator error); the link
counts as ready once both an API-capable and an event-capable connection are up, and the ``on_ready`` hook
runs each time that becomes true again. A newer connection of a role replaces the older one. Calls while
no API connection exists raise PlatformUnavailable; the implementation reconnects by itself.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web

from adapters.onebot.link import (
    EventHandler,
    EventPump,
    LostHook,
    ReadyHook,
    WsChannel,
    bound_port,
    log,
    offered_token,
)
from bot.errors import AdapterConfigError, PlatformUnavailable

ROLES = ("universal", "api", "event")


class ReverseLink:
    def __init__(
        self,
        listen: str,
        port: int,
        path: str,
        token: str,
        on_event: EventHandler,
        on_ready: ReadyHook,
        *,
        call_timeout_s: float = 30.0,
        on_lost: LostHook = lambda: None,
    ) -> None:
        self._listen, self._port = listen, port
        self._path = "/" + path.strip("/")
        self._token = token
        self._pump = EventPump(on_event)
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._timeout = call_timeout_s
        self._runner: web.AppRunner | None = None
        self._api: WsChannel | None = None
        self._events: WsChannel | None = None
        self._refusals = 0
        self._ready_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._open: set[WsChannel] = set()
        self.self_id: str = ""
        self.port = port

    @property
    def where(self) -> str:
        return f"ws://{self._listen}:{self.port}{self._path}"

    @property
    def ready(self) -> bool:
        return self._api is not None and self._events is not None

    async def start(self) -> None:
        app = web.Application()
        app.on_shutdown.append(self._close_all)
        base = self._path.rstrip("/")
        for route in {self._path, base + "/api", base + "/event"}:
            app.router.add_get(route, self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self._listen, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise AdapterConfigError(
                f"cannot listen for the OneBot implementation on {self._listen}:{self._port} ({exc}); pick a "
                "free adapters.onebot.port"
            ) from exc
        self._runner = runner
        self.port = bound_port(runner, self._port)
        self._pump.start("onebot-events")
        log.info("onebot: waiting for the OneBot implementation to connect to %s", self.where)

    def _role(self, request: web.Request) -> str:
        role = request.headers.get("X-Client-Role", "").strip().lower()
        if role in ROLES:
            return role
        tail = request.path.rstrip("/").rsplit("/", 1)[-1].lower()
        return tail if tail in ("api", "event") else "universal"

    def _authorized(self, request: web.Request) -> web.Response | None:
        if not self._token:
            return None
        offered = offered_token(request.headers, request.query)
        if offered is not None and hmac.compare_digest(offered.encode(), self._token.encode()):
            self._refusals = 0
            return None
        self._refusals += 1
        if self._refusals == 1:
            log.error(
                "onebot: refused a connection from %s to %s: %s. Make the token in the implementation's "
                "reverse WebSocket settings equal to adapters.onebot.access_token",
                request.remote, self.where,
                "it presented no access token" if offered is None else "its access token is wrong",
            )  # fmt: skip
        return web.Response(
            status=401 if offered is None else 403,
            text="access token refused",
            headers={"Connection": "close"},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return web.Response(status=503, text="paibot is stopping", headers={"Connection": "close"})
        refused = self._authorized(request)
        if refused is not None:
            return refused
        role = self._role(request)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        self.self_id = request.headers.get("X-Self-ID", self.self_id)
        wants_events = role in ("universal", "event")
        channel = WsChannel(
            ws, self.where, self._pump.queue if wants_events else None,
            api=role in ("universal", "api"), timeout_s=self._timeout,
        )  # fmt: skip
        self._open.add(channel)
        was_ready = self.ready
        old = [c for c in (self._api if channel.api else None, self._events if wants_events else None) if c]
        if channel.api:
            self._api = channel
        if wants_events:
            self._events = channel
        for c in set(old) - {channel}:
            await c.close()
        log.info("onebot: the implementation (QQ %s) connected as a %s client", self.self_id or "?", role)
        if self.ready and not was_ready:
            task = asyncio.create_task(self._announce(), name="onebot-ready")
            self._ready_tasks.add(task)
            task.add_done_callback(self._ready_tasks.discard)
        try:
            await channel.run()
        finally:
            self._open.discard(channel)
            if self._api is channel:
                self._api = None
            if self._events is channel:
                self._events = None
                self._on_lost()
            if not self.ready and not self._stopping:
                log.warning(
                    "onebot: the %s connection from the implementation closed; waiting for it to return", role
                )
        return ws

    async def _announce(self) -> None:
        try:
            await self._on_ready()
        except Exception:  # noqa: BLE001 - catching up failing must not end the link
            log.exception("onebot: catching up after the implementation connected failed")

    async def _close_all(self, _app: object = None) -> None:
        for channel in list(self._open):
            await channel.close()
        self._api = self._events = None

    async def call(self, action: str, params: dict[str, Any] | None = None) -> Any:
        channel = self._api
        if channel is None:
            raise PlatformUnavailable(f"the OneBot implementation is not connected to {self.where}")
        return await channel.call(action, params or {})

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._ready_tasks = self._ready_tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_all()
        await self._pump.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
