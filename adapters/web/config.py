"""``adapters.web`` in config.yaml: the schema of the web group's section and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class WebAdapterSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    access_token: str = ""
    public_url: str = ""
    max_media_bytes: int = 2 * 1024 * 1024 * 1024  # a video or audio file to watch together
    # Per client (address; see adapters.web.guard), what a hostile page or script may do at most; 0: no limit.
    # A client is an IP address (an IPv6 one: its /64). Behind a reverse proxy every request comes from the proxy:
    trust_forwarded_for: bool = False  # then the client is X-Forwarded-For's last address (what the proxy saw)
    sockets_per_client: int = 20
    socket_opens_per_client_per_minute: int = 30  # (re)connections: this many at once, then evenly over a minute
    socket_messages_per_s: float = 2.0  # typing notices, player commands and clock pings, all of a client's sockets
    posts_per_s: float = 1.0  # messages posted (and members made) per client (bursts of 30 allowed)
    groups_per_client_per_hour: int = 5
    members_per_client_per_hour: int = 120  # nicknames picked (new members)
    missed_lookups_per_client_per_hour: int = 60  # group numbers or invites asked for that do not exist
    # Storage quotas (0: none): one group holds a film or two to watch together; all groups stay bounded.
    group_storage_mb: int = 5000
    storage_mb: int = 20000


_LIMITS = (  # keys that must not be negative
    "sockets_per_client", "socket_opens_per_client_per_minute", "socket_messages_per_s", "posts_per_s",
    "groups_per_client_per_hour", "members_per_client_per_hour",
    "missed_lookups_per_client_per_hour", "group_storage_mb", "storage_mb",
)


def validate(cfg: WebAdapterSettings, path: str) -> None:
    if cfg.enabled and cfg.host not in LOOPBACK and not cfg.access_token:
        raise ConfigError(
            f"{path}.access_token",
            f"binding the web group to {cfg.host} exposes it to the network; set an access_token first",
        )
    for key in _LIMITS:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{path}.{key}", "must not be negative (0 means no limit)")
