"""The Discord adapter (discord.py), registered as the ``discord`` plugin.

``adapter`` holds ``DiscordAdapter``; the gateway client, conversion, catch-up sync, text rules and the app
registration (slash commands, invite link) live beside it. The SDK is imported only when it is needed.
"""

from __future__ import annotations

from typing import Any

from adapters.discord.config import DiscordAdapterSettings, validate
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv


def _create(cfg: DiscordAdapterSettings, env: AdapterEnv) -> Any:
    from adapters.discord.adapter import create_adapter

    return create_adapter(cfg, env)


def _invite(cfg: DiscordAdapterSettings) -> str:
    from adapters.discord.registration import invite_url

    return invite_url(cfg)


plugin = AdapterPlugin(
    name="discord",
    settings=DiscordAdapterSettings,
    create=_create,
    validate=validate,
    description="Discord servers and direct messages (gateway, slash commands)",
    label="DC",
    secret_keys=("token",),
    quiet_loggers=("discord",),
    invite=_invite,
)
