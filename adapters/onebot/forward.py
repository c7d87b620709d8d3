"""Forward WebSocket: paibot connects to the implementation's WebSocket server (``adapters.onebot.url``,
its universal endpoint, which serves API calls and events on one connection).

``start`` is one connection attempt (the adapter supervisor retries it): unreachable -> PlatformUnavailable
naming the URL; the token refused (HTTP 401/403 on the handshake, or NapCat's retcode-1403 frame right after
it) -> CredentialsRejected. Once up, the link keeps itself up: a dropped connection is reconnected with
capped, jittered backoff (at most ``RECONNECT_CAP_S`` apart), one warning when the outage begins and one
line when it ends; a token refused while reconnecting is logged once per outage, and retrying goes on (the
operator may fix the implementation's side without restarting paibot).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp

from adapters.onebot.link import (
    ActionFailed,
    Backoff,
    EventHandler,
    EventPump,
    LostHook,
    ReadyHook,
    WsChannel,
    bearer,
    log,
    token_refused,
)
from bot.errors import PlatformUnavailable
from bot.ports import Clock

CONNECT_TIMEOUT_S = 15.0


class ForwardLink:
    def __init__(
        self,
        url: str,
        token: str,
        on_event: EventHandler,
        on_ready: ReadyHook,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        call_timeout_s: float = 30.0,
        reconnect_cap_s: float = 60.0,
        on_lost: LostHook = lambda: None,
    ) -> None:
        self.url = url
        self._token = token
        self._pump = EventPump(on_event)
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._clock = clock
        self._backoff = Backoff(rng or random.Random(), cap_s=reconnect_cap_s)
        self._timeout = call_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._channel: WsChannel | None = None
        self._task: asyncio.Task[None] | None = None

    async def _connect(self) -> WsChannel:
        """One connection attempt; raises PlatformUnavailable or CredentialsRejected."""
        assert self._session is not None
        try:
            ws = await self._session.ws_connect(
                self.url, headers=bearer(self._token), heartbeat=30.0,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                max_msg_size=64 * 1024 * 1024,
            )  # fmt: skip
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise token_refused(self.url, f"HTTP {exc.status}") from None
            raise PlatformUnavailable(
                f"the OneBot WebSocket at {self.url} answered HTTP {exc.status}"
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise PlatformUnavailable(f"cannot reach the OneBot WebSocket at {self.url} ({exc})") from exc
        return WsChannel(ws, self.url, self._pump.queue, api=True, timeout_s=self._timeout)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
        )
        try:
            channel = await self._connect()
            reader = asyncio.create_task(channel.run(), name="onebot-ws-read")
            try:
                await channel.call("get_status", {})  # a refused token shows here (NapCat) at the latest
            except ActionFailed:
                pass  # it answered: connected (some implementations lack get_status)
            except Exception:
                if channel.refused:
                    raise token_refused(self.url) from None
                raise
            finally:
                if channel.refused or channel.closed.is_set():
                    await channel.close()
                    await asyncio.gather(reader, return_exceptions=True)
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._channel = channel
        self._pump.start("onebot-events")
        self._task = asyncio.create_task(self._keep_up(reader), name="onebot-ws-forward")
        await self._on_ready()

    async def _keep_up(self, reader: asyncio.Task[None]) -> None:
        while True:
            await asyncio.gather(reader, return_exceptions=True)
            self._on_lost()
            refused = self._channel is not None and self._channel.refused
            self._channel = None
            warned = False
            outage = 0
            while True:
                if refused and not warned:
                    log.error("onebot: %s; retrying in the background", token_refused(self.url))
                    warned = True
                elif not warned:
                    log.warning(
                        "onebot: the connection to %s was lost; reconnecting (at most %.0fs apart)",
                        self.url,
                        self._backoff.cap_s,
                    )
                    warned = True
                await self._clock.sleep(self._backoff.next_delay())
                outage += 1
                try:
                    channel = await self._connect()
                except PlatformUnavailable as exc:
                    log.debug("onebot: reconnect attempt %d failed: %s", outage, exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - a refused token: keep trying, said once
                    if not refused:
                        log.error("onebot: %s; retrying in the background", exc)
                    refused = True
                    continue
                reader = asyncio.create_task(channel.run(), name="onebot-ws-read")
                self._channel = channel
                self._backoff.reset()
                log.info("onebot: reconnected to %s after %d attempt(s)", self.url, outage)
                try:
                    await self._on_ready()
                except Exception:  # noqa: BLE001 - backfill failing must not end the link
                    log.exception("onebot: catching up after the reconnect failed")
                break

    async def call(self, action: str, params: dict[str, Any] | None = None) -> Any:
        channel = self._channel
        if channel is None:
            raise PlatformUnavailable(f"not connected to the OneBot implementation at {self.url}")
        return await channel.call(action, params or {})

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        await self._pump.stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
