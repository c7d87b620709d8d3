"""The discord.py client as the adapter uses it: endpoints redirected per client, events forwarded.

Pointing discord.py somewhere else (a proxy, or the fake Discord of the tests) is usually done by assigning
``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``. Both are process-wide class attributes,
so two clients (or two tests) would leak into each other. Instead, :class:`RoutedHTTPClient` rewrites each
request's URL and the gateway URL of each websocket connect, for its own client only; the globals stay
untouched. What this does not cover: code paths of discord.py that bypass ``HTTPClient.request`` (the
``discord.Webhook`` / ``Interaction.response`` helpers build their own requests from the global
``Route.BASE``), which is why the adapter answers interactions with plain routes through this client.

``login_error`` and ``gateway_error`` say what a failed connection means, in ``bot.errors`` terms (see
``bot.supervisor``): an outage to wait out (``PlatformUnavailable``) or what the operator must fix.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import aiohttp
import discord
import yarl
from discord.http import HTTPClient, Route

from bot.errors import AdapterConfigError, CredentialsRejected, PaibotError, PlatformUnavailable

log = logging.getLogger("paibot.discord")

INTENT_HELP = (
    "Discord refused the gateway connection (close code 4014: disallowed intents). paibot needs the "
    "privileged MESSAGE CONTENT INTENT: open https://discord.com/developers/applications, select your "
    "application, go to Bot -> Privileged Gateway Intents, switch on 'Message Content Intent', save, and "
    "start paibot again."
)
TOKEN_HELP = (
    "Discord rejected the bot token in adapters.discord.token ({why}). Copy a fresh token from "
    "https://discord.com/developers/applications -> your application -> Bot -> Reset Token, put it in the "
    "environment variable your config.yaml reads (e.g. DISCORD_TOKEN) and start paibot again."
)
UNREACHABLE = (aiohttp.ClientError, OSError, asyncio.TimeoutError, discord.GatewayNotFound)


def login_error(exc: BaseException, api: str) -> PaibotError:
    """What a failed login (``GET /users/@me``) means."""
    if isinstance(exc, discord.LoginFailure):
        return CredentialsRejected(TOKEN_HELP.format(why="HTTP 401 on /users/@me"))
    if isinstance(exc, discord.DiscordServerError):
        return PlatformUnavailable(f"Discord's API at {api} answered {exc.status}")
    if isinstance(exc, discord.HTTPException):
        return AdapterConfigError(f"Discord's API at {api} refused the login ({exc.status}): "
                                  f"{exc.text[:200]}; check adapters.discord.api_base")
    return PlatformUnavailable(f"cannot reach Discord's API at {api} ({_describe(exc)})")


def gateway_error(exc: BaseException | None, gateway: str) -> PaibotError:
    """What the end of a gateway connection (``exc`` None: closed cleanly) means."""
    if isinstance(exc, discord.PrivilegedIntentsRequired) or (
            isinstance(exc, discord.ConnectionClosed) and exc.code == 4014):
        return AdapterConfigError(INTENT_HELP)
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return CredentialsRejected(TOKEN_HELP.format(why="gateway close code 4004, authentication failed"))
    if isinstance(exc, discord.ConnectionClosed) and exc.code in (4010, 4011, 4012, 4013):
        return AdapterConfigError(f"Discord closed the gateway with code {exc.code} ({exc.reason})")
    if exc is None or isinstance(exc, (*UNREACHABLE, discord.ConnectionClosed, discord.DiscordServerError)):
        why = _describe(exc) if exc is not None else "it closed the connection"
        return PlatformUnavailable(f"cannot reach Discord's gateway at {gateway} ({why})")
    return AdapterConfigError(f"Discord gateway stopped: {exc!r}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def paibot_intents() -> discord.Intents:
    """Guilds, guild messages, DMs and the privileged message-content intent; nothing else."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    return intents


class RoutedHTTPClient(HTTPClient):
    """discord.py's HTTP client with the REST base and the gateway URL replaced for this instance only."""

    def __init__(self, *args: Any, api_base: str = "", gateway_url: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_base = api_base.rstrip("/")
        self.gateway_url = gateway_url

    async def request(self, route: Route, **kwargs: Any) -> Any:
        default = Route.BASE
        if self.api_base and route.url.startswith(default):
            route.url = self.api_base + route.url[len(default):]
        return await super().request(route, **kwargs)

    async def ws_connect(self, url: str, *, compress: int = 0) -> Any:
        if self.gateway_url:
            # Every connect (first, resume, re-identify) goes to the configured gateway, keeping the query
            # (v, encoding, compress) discord.py chose.
            url = str(yarl.URL(self.gateway_url).with_query(yarl.URL(url).query))
        return await super().ws_connect(url, compress=compress)


class ClientEvents(Protocol):
    """What :class:`PaibotClient` forwards to (the adapter)."""

    async def on_ready(self) -> None: ...
    async def on_resumed(self) -> None: ...
    async def on_disconnect(self) -> None: ...
    async def on_message(self, message: discord.Message) -> None: ...
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None: ...
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None: ...
    async def on_interaction(self, interaction: discord.Interaction) -> None: ...
    async def on_guild_join(self, guild: discord.Guild) -> None: ...
    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None: ...


class PaibotClient(discord.Client):
    """A ``discord.Client`` that forwards the events the adapter needs and logs handler errors.

    discord.py runs each ``on_<event>`` as its own task and routes exceptions to ``on_error``, so one bad
    event never stops the gateway loop.
    """

    def __init__(self, events: ClientEvents, *, api_base: str = "", gateway_url: str = "",
                 guild_ready_timeout: float = 2.0) -> None:
        super().__init__(intents=paibot_intents(), guild_ready_timeout=guild_ready_timeout,
                         chunk_guilds_at_startup=False, max_messages=1000,
                         allowed_mentions=discord.AllowedMentions.none())
        self.http = RoutedHTTPClient(self.loop, None, api_base=api_base, gateway_url=gateway_url)
        self._connection.http = self.http
        self._events = events

    async def on_ready(self) -> None:
        await self._events.on_ready()

    async def on_resumed(self) -> None:
        await self._events.on_resumed()

    async def on_disconnect(self) -> None:
        await self._events.on_disconnect()

    async def on_message(self, message: discord.Message) -> None:
        await self._events.on_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self._events.on_raw_message_edit(payload)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._events.on_raw_message_delete(payload)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self._events.on_interaction(interaction)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._events.on_guild_join(guild)

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        await self._events.on_guild_channel_create(channel)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord: handler for %s failed", event_method)
