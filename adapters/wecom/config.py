"""``adapters.wecom`` in config.yaml: the WeCom AI bot (企业微信智能机器人) in API mode.

WeCom calls paibot's callback URL (``http://<listen>:<port><path>``, published over HTTPS by the operator's
reverse proxy) with encrypted JSON; ``token`` and ``encoding_aes_key`` are the two values of the bot's API
settings page (Token, EncodingAESKey).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError


@dataclass(frozen=True)
class WeComSettings:
    enabled: bool = False
    token: str = ""
    encoding_aes_key: str = ""
    bot_id: str = ""  # the aibotid; when set, callbacks for another bot are refused
    mention_name: str = ""  # the bot's name in WeCom when it differs from bot.name (stripped from "@name")
    listen: str = "127.0.0.1"
    port: int = 8790
    path: str = "/wecom/callback"
    stream_window_s: float = 330.0  # WeCom stops refreshing a stream 6 minutes after the message
    response_url_ttl_s: float = 3500.0  # a response_url works once, for an hour


def validate(cfg: WeComSettings, path: str) -> None:
    if not cfg.enabled:
        return
    if not cfg.token:
        raise ConfigError(
            f"{path}.token", "wecom is enabled but has no token (the Token of the bot's API settings)"
        )
    if len(cfg.encoding_aes_key) != 43:
        raise ConfigError(
            f"{path}.encoding_aes_key", "must be the 43-character EncodingAESKey of the bot's API settings"
        )
    if not cfg.path.startswith("/"):
        raise ConfigError(f"{path}.path", "must start with /")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"{path}.port", "must be a TCP port")
    if not 10 <= cfg.stream_window_s <= 360:
        raise ConfigError(
            f"{path}.stream_window_s", "must be between 10 and 360 seconds (WeCom stops at 6 minutes)"
        )
