"""``adapters.matrix`` in config.yaml: the schema of the Matrix adapter's section and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError


@dataclass(frozen=True)
class MatrixAdapterSettings:
    enabled: bool = False
    homeserver: str = ""
    user_id: str = ""
    password: str = ""
    access_token: str = ""
    device_id: str = ""
    device_name: str = "paibot"
    allowed_inviters: tuple[str, ...] = ()  # user ids or ":server" suffixes; empty = nobody (fail-closed)
    command_prefixes: tuple[str, ...] = ("!", "/")


def validate(cfg: MatrixAdapterSettings, path: str) -> None:
    if not cfg.enabled:
        return
    if not cfg.homeserver or not cfg.user_id:
        raise ConfigError(path, "matrix is enabled but homeserver or user_id is empty")
    if not (cfg.password or cfg.access_token):
        raise ConfigError(f"{path}.password", "matrix needs a password or an access_token")
