"""The built-in web group (aiohttp), registered as the ``web`` plugin.

``adapter`` holds ``WebAdapter``; the HTTP API, live updates, storage, files and the page's static files
(``static/``) live beside it.
"""

from __future__ import annotations

from typing import Any

from adapters.web.config import WebAdapterSettings, validate
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
    secret_keys=("access_token",),
    # Anyone who can open the page picks their own name and id: nobody there can be an admin.
    verified_identities=False,
)
