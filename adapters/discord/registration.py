"""Discord setup helpers: the invite URL (scopes and permissions) and the slash-command payload."""

from __future__ import annotations

import base64
import re
from typing import Any

import discord

from adapters.discord.config import DiscordAdapterSettings
from bot.errors import ConfigError
from bot.ports import CommandInfo

_SLASH_NAME = re.compile(r"[^a-z0-9_-]")


def invite_permissions() -> discord.Permissions:
    """What the bot needs in a server: read and answer, in threads too, with files and polls."""
    return discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                               read_message_history=True, attach_files=True, add_reactions=True,
                               send_polls=True)


def application_id_of(cfg: DiscordAdapterSettings) -> str:
    """The configured application id, else the one encoded in the bot token's first segment."""
    if cfg.application_id:
        return cfg.application_id
    first = cfg.token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(first + "=" * (-len(first) % 4), validate=False).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if not decoded.isdigit():
        raise ConfigError("adapters.discord.application_id",
                          "set the application id (Developer Portal -> General Information -> Application ID)")
    return decoded


def invite_url(cfg: DiscordAdapterSettings) -> str:
    """The OAuth2 URL that adds the bot (with slash commands) to a server (``paibot invite discord``)."""
    app_id = application_id_of(cfg)
    return discord.utils.oauth_url(app_id, permissions=invite_permissions(),
                                   scopes=("bot", "applications.commands"))


def slash_command_payload(commands: tuple[CommandInfo, ...]) -> list[dict[str, Any]]:
    """Global chat-input commands for the core's command list, each with one optional text argument."""
    out: dict[str, dict[str, Any]] = {}
    for cmd in commands:
        name = _SLASH_NAME.sub("", cmd.name.lower().lstrip("/"))[:32]
        if not name or name in out:
            continue
        option = {"type": 3, "name": "text", "required": False,
                  "description": (cmd.usage or "what to pass to the command")[:100]}
        out[name] = {"name": name, "type": 1, "description": (cmd.description or name)[:100], "options": [option]}
    return list(out.values())[:100]
