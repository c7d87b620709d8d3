"""The Telegram adapter (python-telegram-bot), registered as the ``telegram`` plugin.

``adapter`` holds ``TelegramAdapter``; intake, conversion, text rules, flood control and send records live
beside it. The SDK is imported only when the adapter is created.
"""

from __future__ import annotations

from typing import Any

from adapters.telegram.config import TelegramAdapterSettings, validate
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv


def _create(cfg: TelegramAdapterSettings, env: AdapterEnv) -> Any:
    from adapters.telegram.adapter import create_adapter

    return create_adapter(cfg, env)


plugin = AdapterPlugin(
    name="telegram",
    settings=TelegramAdapterSettings,
    create=_create,
    validate=validate,
    description="Telegram groups and direct messages (Bot API: long polling or a webhook)",
    label="TG",
    secret_keys=("token", "secret_token"),
    quiet_loggers=("telegram.ext",),
)
