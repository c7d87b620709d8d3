"""paibot's ``linechat`` adapter plugin: a chat room over TCP, one JSON object per line.

Importing this module is cheap: it declares the plugin and its settings; the server lives in ``server``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv, ChatAdapter


@dataclass(frozen=True)
class LineChatSettings:
    """``adapters.linechat`` in config.yaml."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 7788  # 0 picks a free port (tests)
    max_text_length: int = 400


def validate(cfg: LineChatSettings, path: str) -> None:
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"{path}.port", f"must be a TCP port (0-65535), got {cfg.port}")
    if cfg.max_text_length < 20:
        raise ConfigError(f"{path}.max_text_length", "must be at least 20")


def create(cfg: LineChatSettings, env: AdapterEnv) -> ChatAdapter:
    from paibot_linechat.server import LineChatAdapter

    return LineChatAdapter(cfg, env)


plugin = AdapterPlugin(
    name="linechat",
    settings=LineChatSettings,
    create=create,
    validate=validate,
    description="example: a line-based chat room over TCP",
)
