"""The WeCom AI bot (企业微信智能机器人, API mode), registered as the ``wecom`` plugin.

``adapter`` holds ``WeComAdapter``; the callback encryption (``crypto``), conversion and the stream-refresh
answer slots (``streams``) live beside it.
"""

from __future__ import annotations

from typing import Any

from adapters.wecom.config import WeComSettings, validate
from bot.i18n import N_
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv


def _create(cfg: WeComSettings, env: AdapterEnv) -> Any:
    from adapters.wecom.adapter import create_adapter

    return create_adapter(cfg, env)


plugin = AdapterPlugin(
    name="wecom",
    settings=WeComSettings,
    create=_create,
    validate=validate,
    description="WeCom (企业微信) AI bot: @mentions in groups and direct messages, answers streamed",
    label=N_("WeCom"),  # translated where members read it ("[企业微信] Alice: ...")
    secret_keys=("token", "encoding_aes_key"),
)
