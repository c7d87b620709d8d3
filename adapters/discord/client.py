"""The discord.py client as the adapter uses it: endpoints redirected per client, events forwarded.

Pointing discord.py somewhere else (a proxy, or the fake Discord of the tests) is usually done by assigning
``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``. Both are process-wide class attributes,
so two clients (or two tests) would leak into each other. Instead, :class:`RoutedHTTPClient` rewrites each
request's URL and the gateway URL of each websocket connect, for its own client only; the globals stay
untouched. What this does not cover: code paths of discord.py that bypass ``HTTPClient.request`` (the
``discord.Webhook`` / ``Interaction.response`` helpers build their own requests from the global
``Route.BASE``), which is why the adapter answers interactions with plain routes through this client.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import discord
import yarl
from discord.http import HTTPClient, Route

log = logging.getLogger("paibot.discord")


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

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self._events.on_interaction(interaction)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._events.on_guild_join(guild)

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        await self._events.on_guild_channel_create(channel)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord: handler for %s failed", event_method)
