"""The plugin API: what an adapter, skill or tool package implements, and how paibot finds it.

A plugin is a value registered under an entry point of its distribution. The entry point's name is the
plugin's name and names its section of config.yaml::

    [project.entry-points."paibot.adapters"]
    echo = "paibot_echo:plugin"        # an AdapterPlugin  -> adapters.echo
    [project.entry-points."paibot.skills"]
    dice = "paibot_dice:plugin"        # a SkillPlugin     -> skills.dice
    [project.entry-points."paibot.tools"]
    mcp = "bot.providers.mcp:plugin"   # a ToolPlugin      -> tools.mcp

The built-in adapters, skills and tools are registered exactly the same way (see pyproject.toml): the core
names no platform. Each plugin owns its section: ``settings`` is a frozen dataclass whose fields are the
section's keys (same types and key-path errors as the rest of config.yaml: ``adapters.echo.port: expected a
whole number``) and whose ``enabled: bool`` field says whether the plugin runs. A section that no installed
plugin claims is an error. Importing the module an entry point names must be cheap and must not import a
platform SDK: keep the SDK behind ``create``/``build``.

Contracts, for implementers:

- ``AdapterPlugin.create(settings, env)`` returns a ``bot.ports.ChatAdapter`` (not started). Its
  ``platform`` (or ``name``) must equal the plugin's name: chats are keyed ``"<name>:<chat id>"``.
- ``validate(settings, path)`` runs after the types were checked and raises ``bot.errors.ConfigError`` naming
  a key under ``path`` (``f"{path}.token"``) for what the types cannot say (a token missing while enabled).
  It is called for disabled sections too, so it should look at ``settings.enabled`` itself.
- ``SkillPlugin.build(env)`` returns the skill's ``bot.commands.Skill`` objects (commands, tools, observers)
  and its background services (objects with async ``start()``/``stop()``).
- ``ToolPlugin.create(settings, env)`` returns a ``ToolProvider``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from types import MappingProxyType
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.ports import AdapterEnv, ChatAdapter, Tool

if TYPE_CHECKING:
    from bot.commands import CommandRegistry, Skill
    from bot.services import Services
    from bot.skills.resources import SkillResources

log = logging.getLogger("paibot.plugins")

ADAPTERS = "paibot.adapters"
SKILLS = "paibot.skills"
TOOLS = "paibot.tools"
KINDS = {ADAPTERS: "adapters", SKILLS: "skills", TOOLS: "tools"}  # entry-point group -> config section

Validator = Callable[[Any, str], None]


@dataclass(frozen=True)
class Enabled:
    """The section of a plugin that has no settings of its own: just ``enabled``."""

    enabled: bool = True


@dataclass(frozen=True)
class AdapterPlugin:
    """A platform. ``settings`` is the schema of ``adapters.<name>`` (a frozen dataclass with ``enabled``)."""

    name: str
    settings: type
    create: Callable[[Any, AdapterEnv], ChatAdapter]
    validate: Validator | None = None
    description: str = ""
    # Key names inside the section whose values are secrets (masked by `paibot check`, redacted from logs).
    secret_keys: tuple[str, ...] = ()
    # False when the platform cannot vouch for who wrote a message (a client that picks its own id). Such
    # identities can never be admins. (The web group vouches for its members with member keys.)
    verified_identities: bool = True
    # Loggers of the platform SDK kept at WARNING or above (they are chatty at INFO).
    quiet_loggers: tuple[str, ...] = ()
    # ``paibot invite <name>``: the link that adds the bot to a server, when the platform has one.
    invite: Callable[[Any], str] | None = None
    # The platform's short name where groups of several platforms meet in one pai: ``[TG] Alice: ...`` in
    # relayed copies, ``[TG]`` before the lines of the prompt. Default: the plugin's name. A label that is a
    # word (``Web``) is marked with ``bot.i18n.N_``: members read it in their language, the model in English.
    label: str = ""


@dataclass(frozen=True)
class SkillEnv:
    """What a skill plugin is built with."""

    settings: Any  # its own section, skills.<name>
    services: Services  # the core's shared handles (memory, state, clock, random source, brain, send)
    registry: CommandRegistry
    shared: SkillResources  # stores several skills share (skills' database, register, posted files), typed


@dataclass(frozen=True)
class SkillSet:
    skills: Sequence[Skill] = ()
    background: Sequence[Any] = ()  # objects with async start() and stop()


@dataclass(frozen=True)
class SkillPlugin:
    """Commands, tools and observers. ``settings`` is the schema of ``skills.<name>``."""

    name: str
    build: Callable[[SkillEnv], SkillSet]
    settings: type = Enabled
    validate: Validator | None = None
    description: str = ""
    secret_keys: tuple[str, ...] = ()
    order: int = 100  # position of its commands in /help (built-ins use 10..90); ties by name


@runtime_checkable
class ToolProvider(Protocol):
    """A source of LLM tools discovered at run time (e.g. MCP servers).

    ``start`` discovers the tools; a source that fails must be logged and left out, never raise (one broken
    server must not stop the bot). ``tools_for(group_key)`` is called for every answer and returns the
    tools enabled in that group, fast and without I/O. Each tool's ``run`` must be bounded in time and output
    and raise nothing but return its failure as text. ``stop`` closes every connection; idempotent.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def tools_for(self, group_key: str) -> Sequence[Tool]: ...


@dataclass(frozen=True)
class ToolEnv:
    bot_name: str
    data_dir: Any  # pathlib.Path


@dataclass(frozen=True)
class ToolPlugin:
    """Tools offered to the model. ``settings`` is the schema of ``tools.<name>``."""

    name: str
    settings: type
    create: Callable[[Any, ToolEnv], ToolProvider]
    validate: Validator | None = None
    description: str = ""
    secret_keys: tuple[str, ...] = ()


Plugin = AdapterPlugin | SkillPlugin | ToolPlugin
_TYPES: dict[str, type] = {ADAPTERS: AdapterPlugin, SKILLS: SkillPlugin, TOOLS: ToolPlugin}


@dataclass(frozen=True)
class Installed:
    """A plugin found through an entry point, with where it came from."""

    plugin: Any  # AdapterPlugin | SkillPlugin | ToolPlugin
    distribution: str = ""
    version: str = ""


@dataclass(frozen=True)
class PluginCatalog:
    """Every installed plugin by kind, and the entry points that could not be loaded (``problems``:
    ``"adapters.<name>" -> reason``; a configured section whose plugin failed to load is a config error)."""

    adapters: Mapping[str, Installed] = field(default_factory=dict)
    skills: Mapping[str, Installed] = field(default_factory=dict)
    tools: Mapping[str, Installed] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)

    def section(self, kind: str) -> Mapping[str, Installed]:
        return {"adapters": self.adapters, "skills": self.skills, "tools": self.tools}[kind]

    def all(self) -> Iterator[tuple[str, Installed]]:
        for kind in ("adapters", "skills", "tools"):
            for inst in self.section(kind).values():
                yield kind, inst

    @classmethod
    def of(cls, *plugins: Plugin) -> PluginCatalog:
        """A catalog of the given plugins only (tests, embedding paibot without entry points)."""
        by_kind: dict[str, dict[str, Installed]] = {"adapters": {}, "skills": {}, "tools": {}}
        for p in plugins:
            kind = next(KINDS[g] for g, t in _TYPES.items() if isinstance(p, t))
            by_kind[kind][p.name] = Installed(p)
        return cls(by_kind["adapters"], by_kind["skills"], by_kind["tools"])


_cache: tuple[tuple[tuple[str, int, int], ...], PluginCatalog] | None = None
_cache_lock = threading.Lock()


def _installed_key() -> tuple[tuple[str, int, int], ...]:
    """What decides which distributions are installed: every import path, when it last changed and how many
    directories it holds (installing or removing a package adds or removes its ``*.dist-info`` directory,
    which changes both, even within one tick of a coarse file clock)."""
    key = []
    for path in sys.path:
        try:
            st = os.stat(path or ".")
            key.append((path, st.st_mtime_ns, st.st_nlink))
        except OSError:
            key.append((path, -1, -1))
    return tuple(key)


def discover() -> PluginCatalog:
    """Every plugin registered under the three entry-point groups of the installed distributions.

    Reading every distribution's metadata costs about 0.15 s, so the catalog is kept and read again only when
    the import paths or their directories change (a package installed, removed or put on ``sys.path``)."""
    global _cache
    key = _installed_key()
    with _cache_lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
    catalog = _discover()
    with _cache_lock:
        _cache = (key, catalog)
    return catalog


def _discover() -> PluginCatalog:
    found: dict[str, dict[str, Installed]] = {"adapters": {}, "skills": {}, "tools": {}}
    problems: dict[str, str] = {}
    for group, kind in KINDS.items():
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            where = f"{kind}.{ep.name}"
            dist = ep.dist
            origin = f"{dist.name} {dist.version}" if dist is not None else ep.value
            if ep.name in found[kind]:
                problems[where] = (
                    f"registered twice (also by {found[kind][ep.name].distribution}); {origin} ignored"
                )
                continue
            try:
                plugin = ep.load()
                _check_plugin(plugin, group, ep.name)
            except Exception as exc:  # a broken third-party package must not stop the others
                problems[where] = f"{origin}: {type(exc).__name__}: {exc}"
                log.warning("the plugin %s (%s) could not be loaded: %s", where, origin, exc)
                continue
            found[kind][ep.name] = Installed(
                plugin, dist.name if dist is not None else "", dist.version if dist is not None else ""
            )
    return PluginCatalog(MappingProxyType(found["adapters"]), MappingProxyType(found["skills"]),
                         MappingProxyType(found["tools"]), MappingProxyType(problems))


def _check_plugin(plugin: object, group: str, name: str) -> None:
    expected = _TYPES[group]
    if not isinstance(plugin, expected):
        raise TypeError(
            f"the entry point must name a bot.plugins.{expected.__name__}, got {type(plugin).__name__}"
        )
    if plugin.name != name:  # type: ignore[attr-defined]
        raise ValueError(f"the entry point is named {name!r} but the plugin calls itself {plugin.name!r}")  # type: ignore[attr-defined]
    schema = plugin.settings  # type: ignore[attr-defined]
    if not (dataclasses.is_dataclass(schema) and isinstance(schema, type)):
        raise TypeError("settings must be a dataclass type")
    if "enabled" not in {f.name for f in dataclasses.fields(schema)}:
        raise TypeError("settings must have an 'enabled' field")
