"""``adapters.onebot`` in config.yaml: QQ through a OneBot v11 implementation (NapCat, Lagrange, LLOneBot).

    mode: forward   paibot connects to the implementation's WebSocket server      needs: url (ws://...)
    mode: reverse   the implementation connects to paibot's WebSocket endpoint    needs: listen, port, path
    mode: http      paibot calls its HTTP API, it POSTs events to paibot           needs: url (http://...),
                                                                                   listen, port, path
``access_token`` is checked (reverse), presented (forward, http API) or signs event POSTs (http, unless a
separate ``secret`` is set) in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError

MODES = ("forward", "reverse", "http")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class OneBotSettings:
    enabled: bool = False
    mode: str = "forward"
    url: str = ""  # forward: ws://host:port of its WebSocket server; http: http://host:port of its HTTP API
    access_token: str = ""
    listen: str = "127.0.0.1"  # reverse and http: where paibot listens
    port: int = 6199
    path: str = "/onebot/v11"  # reverse: the WebSocket path; http: the path events are POSTed to
    secret: str = ""  # http: the key of X-Signature when it is not the access token
    message_format: str = "array"  # what paibot sends: array (segments) or string (CQ codes)
    message_limit: int = 1500  # characters per QQ message; longer answers are split
    send_interval_s: float = 1.5  # at least this long between two messages in one chat (plus jitter)
    group_per_minute: int = 20  # at most this many messages a minute in one chat (0: no cap)
    global_per_minute: int = 60  # at most this many messages a minute in all chats together (0: no cap)
    backfill: bool = True  # after a reconnect or restart, catch up from get_group_msg_history
    backfill_pages: int = 5  # at most this many pages of history per group
    backfill_page_size: int = 20
    call_timeout_s: float = 30.0


def validate(cfg: OneBotSettings, path: str) -> None:
    if not cfg.enabled:
        return
    if cfg.mode not in MODES:
        raise ConfigError(f"{path}.mode", f"must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.mode == "forward" and not cfg.url.startswith(("ws://", "wss://")):
        raise ConfigError(
            f"{path}.url", "forward mode needs the implementation's WebSocket URL (ws://host:port)"
        )
    if cfg.mode == "http" and not cfg.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{path}.url", "http mode needs the implementation's HTTP API URL (http://host:port)"
        )
    if cfg.mode in ("reverse", "http"):
        if not 0 <= cfg.port <= 65535:
            raise ConfigError(f"{path}.port", "must be a TCP port (1-65535)")
        if not cfg.path.startswith("/"):
            raise ConfigError(f"{path}.path", "must start with /")
        key = cfg.access_token or (cfg.secret if cfg.mode == "http" else "")
        if cfg.listen not in LOOPBACK and not key:
            raise ConfigError(
                f"{path}.access_token",
                f"listening on {cfg.listen} lets anyone on the network act as your QQ account's "
                "implementation; set an access_token (and the same token in the implementation)",
            )
    if cfg.message_format not in ("array", "string"):
        raise ConfigError(f"{path}.message_format", "must be 'array' or 'string'")
    if not 50 <= cfg.message_limit <= 4500:
        raise ConfigError(f"{path}.message_limit", "must be between 50 and 4500 characters")
    if cfg.send_interval_s < 0 or cfg.group_per_minute < 0 or cfg.global_per_minute < 0:
        raise ConfigError(f"{path}.send_interval_s", "pacing values must not be negative")
    if cfg.backfill_pages < 0 or not 1 <= cfg.backfill_page_size <= 100:
        raise ConfigError(
            f"{path}.backfill_page_size", "backfill_pages >= 0 and 1 <= backfill_page_size <= 100"
        )
    if cfg.call_timeout_s <= 0:
        raise ConfigError(f"{path}.call_timeout_s", "must be greater than 0")
