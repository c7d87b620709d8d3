"""QQ through OneBot v11 (NapCat, Lagrange, LLOneBot), registered as the ``onebot`` plugin.

``adapter`` holds ``OneBotAdapter``; the connection modes (``forward``, ``reverse``, ``http``), message
formats (``cqcode``), conversion, pacing, history catch-up and the send journal live beside it.
"""

from __future__ import annotations

from typing import Any

from adapters.onebot.config import OneBotSettings, validate
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv


def _create(cfg: OneBotSettings, env: AdapterEnv) -> Any:
    from adapters.onebot.adapter import create_adapter

    return create_adapter(cfg, env)


plugin = AdapterPlugin(
    name="onebot",
    settings=OneBotSettings,
    create=_create,
    validate=validate,
    description="QQ groups and private chats through OneBot v11 (NapCat, Lagrange, LLOneBot)",
    label="QQ",
    secret_keys=("access_token", "secret"),
)
