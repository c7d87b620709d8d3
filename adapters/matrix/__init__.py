"""The Matrix adapter (matrix-nio), registered as the ``matrix`` plugin.

``adapter`` holds ``MatrixAdapter``; the sync loop, conversion, formatting and retry policy live beside it.
The SDK is imported only when the adapter is created.
"""

from __future__ import annotations

from typing import Any

from adapters.matrix.config import MatrixAdapterSettings, validate
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv


def _create(cfg: MatrixAdapterSettings, env: AdapterEnv) -> Any:
    from adapters.matrix.adapter import create_adapter

    return create_adapter(cfg, env)


plugin = AdapterPlugin(
    name="matrix",
    settings=MatrixAdapterSettings,
    create=_create,
    validate=validate,
    description="Matrix rooms on any homeserver (unencrypted rooms)",
    label="MX",
    secret_keys=("password", "access_token"),
    quiet_loggers=("nio",),
)
