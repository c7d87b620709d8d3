"""``adapters.discord`` in config.yaml: the schema of the Discord adapter's section and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError


@dataclass(frozen=True)
class DiscordAdapterSettings:
    enabled: bool = False
    token: str = ""
    application_id: str = ""
    api_base: str = ""
    gateway_url: str = ""
    backfill_limit: int = 200


def validate(cfg: DiscordAdapterSettings, path: str) -> None:
    if cfg.enabled and not cfg.token:
        raise ConfigError(f"{path}.token", "discord is enabled but has no token")
