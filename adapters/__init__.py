"""Platform adapters, one subpackage per platform; each ``<platform>.adapter`` module exposes
``create_adapter(settings, env) -> ChatAdapter``.

Adapters are found by name: third-party packages register a factory under the entry-point group
``paibot.adapters``; the built-in ones are listed below so a source checkout works without installing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

BUILTIN = {
    "web": "adapters.web.adapter:create_adapter",
    "telegram": "adapters.telegram.adapter:create_adapter",
    "discord": "adapters.discord.adapter:create_adapter",
    "matrix": "adapters.matrix.adapter:create_adapter",
}


def adapter_factory(name: str) -> Callable[..., Any]:
    """The factory registered for ``name`` (entry points first, then the built-ins)."""
    for ep in entry_points(group="paibot.adapters"):
        if ep.name == name:
            return ep.load()
    target = BUILTIN.get(name)
    if target is None:
        raise KeyError(f"no adapter named {name!r}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
