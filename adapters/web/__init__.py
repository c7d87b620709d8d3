"""The built-in web group (aiohttp), registered as the ``web`` plugin.

``adapter`` holds ``WebAdapter``; the HTTP API, live updates, storage, files and the page's static files
(``static/``) live beside it.
"""

from __future__ import annotations

from typing import Any

from adapters.web.config import WebAdapterSettings, validate
from bot.i18n import N_
from bot.plugins import AdapterPlugin
from bot.ports import AdapterEnv


def _create(cfg: WebAdapterSettings, env: AdapterEnv) -> Any:
    from adapters.web.adapter import create_adapter

    return create_adapter(cfg, env)


plugin = AdapterPlugin(
    name="web",
    settings=WebAdapterSettings,
    create=_create,
    validate=validate,
    description="a local web group chat in the browser",
    label=N_("Web"),  # translated where members read it ("[网页] Alice: ...")
    secret_keys=("access_token",),
    # Members prove who they are with member keys (adapters/web/members.py): an author id is the key holder's.
    verified_identities=True,
)
