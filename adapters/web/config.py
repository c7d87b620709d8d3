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


def validate(cfg: WebAdapterSettings, path: str) -> None:
    if cfg.enabled and cfg.host not in LOOPBACK and not cfg.access_token:
        raise ConfigError(
            f"{path}.access_token",
            f"binding the web group to {cfg.host} exposes it to the network; set an access_token first",
        )
