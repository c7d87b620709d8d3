"""The settings the memory reads, declared here as Protocols so the memory needs nothing from the core but
its contracts (``bot.ports``, ``bot.errors``). The composition root passes its settings object, which has
these attributes; tests may pass any object shaped the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

LitellmLoader = Callable[[], Any]
"""Returns the imported ``litellm`` module (the composition root injects its quiet import)."""


class EmbeddingConfig(Protocol):
    """``memory.embedding`` and the endpoint of a ``litellm:<model>`` embedding."""

    @property
    def embedding(self) -> str: ...

    @property
    def embedding_api_base(self) -> str: ...

    @property
    def embedding_api_key(self) -> str: ...


class MemorySection(EmbeddingConfig, Protocol):
    """The ``memory:`` section of config.yaml."""

    @property
    def backend(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def retention_days(self) -> int: ...


class GroupRetention(Protocol):
    """A group's override: ``None`` inherits ``memory.retention_days``."""

    @property
    def retention_days(self) -> int | None: ...


class MemoryConfig(Protocol):
    """Everything the memory and its command line read from the settings."""

    @property
    def memory(self) -> MemorySection: ...

    @property
    def data_path(self) -> Path: ...

    @property
    def groups(self) -> Mapping[str, GroupRetention]: ...

    def group(self, group_key: str) -> GroupRetention: ...

    def pai_of(self, group_key: str) -> str:
        """The memory scope (pai) of a group key."""
        ...
