"""``adapters.telegram`` in config.yaml: the schema of the Telegram adapter's section and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError


@dataclass(frozen=True)
class WebhookSettings:
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 8443
    url_path: str = "telegram"
    webhook_url: str = ""
    secret_token: str = ""


@dataclass(frozen=True)
class TelegramAdapterSettings:
    enabled: bool = False
    token: str = ""
    base_url: str = ""
    base_file_url: str = ""
    poll_timeout_s: int = 30
    webhook: WebhookSettings = WebhookSettings()


def validate(cfg: TelegramAdapterSettings, path: str) -> None:
    if cfg.enabled and not cfg.token:
        raise ConfigError(f"{path}.token", "telegram is enabled but has no token")
