"""config.yaml parsed once into validated, frozen settings.

Loading goes: YAML text -> ``${VAR}`` / ``${VAR:-default}`` interpolation from the environment -> validation
against the dataclasses below (by their type hints) -> frozen ``Settings``. Every problem raises
``ConfigError`` naming the key path (``adapters.telegram.token``). Unknown keys are errors, so a typo never
silently falls back to a default.

The sections ``adapters``, ``skills`` and ``tools`` belong to plugins (``bot.plugins``): each installed
plugin declares the schema of its own section (``adapters.<name>``), validated the same way; a section no
installed plugin claims is an error.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot import plugins as plugin_api
from bot.errors import ConfigError
from bot.i18n import N_

# --------------------------------------------------------------------------- schema

DEFAULT_PERSONA = N_(
    "You are {name}, a friendly, concise member of this group chat. You have been listening to the whole "
    "conversation. Answer like a helpful member: short, concrete, in the language the group uses."
)


@dataclass(frozen=True)
class BotSettings:
    name: str = "Pai"
    aliases: tuple[str, ...] = ()
    persona: str = DEFAULT_PERSONA
    language: str = "auto"
    timezone: str = ""  # empty: the host's local zone (``host_timezone``), resolved when the config is read
    data_dir: str = "./data"
    admins: tuple[str, ...] = ()  # "platform:user_id" of operators with every admin right
    welcome: bool = True  # the first message in a new group says what is recorded


@dataclass(frozen=True)
class LLMSettings:
    model: str = ""  # any litellm model string; empty = run without a model
    api_base: str = ""
    api_key: str = ""
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = 60.0
    max_retries: int = 3
    retry_base_s: float = 1.0
    retry_max_s: float = 20.0
    max_tool_rounds: int = 4
    context_tokens: int = 6000
    max_reply_tokens: int = 800
    temperature: float = 0.7
    vision: bool = False
    image_model: str = ""
    stream: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MemorySettings:
    backend: str = "embedded"  # embedded | http
    url: str = "http://127.0.0.1:8000"  # chroma server, for backend: http
    embedding: str = "offline"  # offline | chroma-default | litellm:<model>
    embedding_api_base: str = ""
    embedding_api_key: str = ""
    recent_messages: int = 30
    recall_hits: int = 6
    retention_days: int = 0  # 0 = keep forever


@dataclass(frozen=True)
class TriggerSettings:
    mention: bool = True
    reply: bool = True
    direct: bool = True
    commands: bool = True
    command_prefixes: tuple[str, ...] = ("/",)
    keywords: tuple[str, ...] = ()
    respond_to_bots: bool = False
    proactive: bool = False
    answer_within_minutes: int = 120  # older messages (caught up after downtime) are remembered, not answered


@dataclass(frozen=True)
class AccessSettings:
    allowed_groups: tuple[str, ...] = ()  # group keys; empty = every group
    allowed_users: tuple[str, ...] = ()  # "platform:user_id"; empty = everyone
    blocked_users: tuple[str, ...] = ()
    allow_direct_messages: bool = True


@dataclass(frozen=True)
class LimitSettings:
    member_per_minute: int = 6
    group_per_minute: int = 20
    daily_tokens_per_group: int = 300_000
    daily_tokens_per_member: int = 100_000  # one member across every group
    daily_tokens: int = 2_000_000  # the whole bot, every group together
    daily_cost_usd: float = 0.0  # the whole bot, as priced by litellm (0 = no cost budget)
    new_groups_per_hour: int = 20  # groups and direct chats the bot starts serving per hour (0 = no limit)
    max_input_chars: int = 8_000
    max_attachment_bytes: int = 20 * 1024 * 1024
    reminders_per_group: int = 50
    concurrent_groups: int = 64  # groups whose messages are handled at once (one message each at most)
    quiet_group_slots: int = 16  # of those, kept for groups back from quiet (bot.lanes)
    image_workers: int = 2  # image edits and captions decoding at once, each in a process of its own
    image_memory_mb: int = 1024  # the memory one such process may use


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics: on the web group's port when it runs, else on ``port`` (0: no port of their own)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0  # the shipped config.yaml says 9464
    access_token: str = ""  # required before binding anything but loopback


@dataclass(frozen=True)
class SearchSettings:
    provider: str = ""  # "" (none) | searxng
    url: str = ""
    max_results: int = 5


@dataclass(frozen=True)
class GroupOverride:
    """Per-group settings; unset (None/empty) fields inherit the bot-wide value."""

    name: str | None = None
    persona: str | None = None
    language: str | None = None
    timezone: str | None = None
    enabled: bool = True
    keywords: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    retention_days: int | None = None
    proactive: bool | None = None
    quiet_hours: str = ""  # "23:00-07:00"


class Sections(Mapping[str, Any]):
    """The sections of one plugin kind by plugin name (``adapters.web``): a read-only mapping whose entries
    also read as attributes (``settings.adapters.web.port``). Each value is the plugin's frozen settings."""

    def __init__(self, items: Mapping[str, Any] | None = None, secret_keys: Mapping[str, tuple[str, ...]] | None = None):
        self._items = dict(items or {})
        self._secret_keys = dict(secret_keys or {})

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"no plugin section named {name!r}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sections) and self._items == other._items

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items)))

    def __repr__(self) -> str:
        return f"Sections({self._items!r})"

    def secret_keys(self, name: str) -> tuple[str, ...]:
        """The key names the section's plugin declares secret."""
        return self._secret_keys.get(name, ())

    def enabled(self) -> list[str]:
        return [name for name, s in self._items.items() if getattr(s, "enabled", False)]


@dataclass(frozen=True)
class Settings:
    bot: BotSettings = BotSettings()
    llm: LLMSettings = LLMSettings()
    memory: MemorySettings = MemorySettings()
    triggers: TriggerSettings = TriggerSettings()
    access: AccessSettings = AccessSettings()
    limits: LimitSettings = LimitSettings()
    search: SearchSettings = SearchSettings()
    adapters: Sections = field(default_factory=Sections)  # adapters.<name>: each adapter plugin's section
    skills: Sections = field(default_factory=Sections)  # skills.<name>
    tools: Sections = field(default_factory=Sections)  # tools.<name>
    groups: dict[str, GroupOverride] = field(default_factory=dict)
    # pais.<name>: the group keys that share one memory. ``relayed_pais`` names those written with
    # ``relay: true`` (``pais: {team: {groups: [...], relay: true}}``): every member message is passed on to
    # the pai's other groups (``bot.relay``). Pais made from chat (``/pai``) live in the state database.
    pais: dict[str, tuple[str, ...]] = field(default_factory=dict)
    relayed_pais: tuple[str, ...] = ()
    metrics: MetricsSettings = MetricsSettings()
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (one JSON object per line)

    # ----------------------------------------------------------------- derived views

    def pai_of(self, group_key: str) -> str:
        """The memory scope of a group: its pai's name if listed under ``pais``, else the group key."""
        for name, keys in self.pais.items():
            if group_key in keys:
                return f"pai:{name}"
        return group_key

    def group(self, group_key: str) -> GroupOverride:
        return self.groups.get(group_key, GroupOverride())

    @property
    def data_path(self) -> Path:
        return Path(self.bot.data_dir).expanduser()


PLUGIN_KINDS = ("adapters", "skills", "tools")  # sections owned by plugins (bot.plugins)
SECRET_KEYS = ("token", "api_key", "password", "access_token", "secret_token", "embedding_api_key")

# --------------------------------------------------------------------------- interpolation

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, env: Mapping[str, str], missing: dict[str, str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in env and env[var] != "":
                return env[var]
            if default is not None:
                return default
            missing[path] = var
            return ""

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, missing) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- validation


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            raise ConfigError(path, f"expected text, got {value!r}")
        return str(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, _join(path, f'"{k}"')) for k, v in value.items()}
    raise ConfigError(path, f"unsupported setting type {tp!r}")  # pragma: no cover - schema bug


def _build(cls: Any, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        where = _join(path, unknown[0])
        raise ConfigError(where, f"unknown key (known keys here: {', '.join(sorted(names))})")
    kwargs = {k: _convert(hints[k], v, _join(path, k)) for k, v in data.items()}
    return cls(**kwargs)


def _check_semantics(s: Settings, missing: dict[str, str], catalog: plugin_api.PluginCatalog) -> None:
    live = ["bot", "memory", "triggers", "access", "limits", "search", "groups", "pais"]
    if s.metrics.enabled:
        live.append("metrics")
    if s.llm.model:
        live.append("llm")
    for kind in PLUGIN_KINDS:
        live += [f"{kind}.{name}" for name in _sections(s, kind).enabled()]
    for path, var in sorted(missing.items()):
        if any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in live):
            raise ConfigError(path, f"environment variable {var} is not set (and no ${{{var}:-default}} given)")
    if s.memory.backend not in ("embedded", "http"):
        raise ConfigError("memory.backend", f"must be 'embedded' or 'http', got {s.memory.backend!r}")
    emb = s.memory.embedding
    if not (emb in ("offline", "chroma-default") or emb.startswith(("litellm:", "sentence-transformers:"))):
        raise ConfigError(
            "memory.embedding",
            "must be 'offline', 'chroma-default', 'litellm:<model>' or 'sentence-transformers:<model or path>'",
        )
    _check_timezone("bot.timezone", s.bot.timezone)
    for key, g in s.groups.items():
        if ":" not in key:
            raise ConfigError(f'groups."{key}"', 'group keys look like "<platform>:<chat id>"')
        if g.timezone:
            _check_timezone(f'groups."{key}".timezone', g.timezone)
    for kind in PLUGIN_KINDS:
        for name, inst in catalog.section(kind).items():
            if inst.plugin.validate is not None and name in _sections(s, kind):
                inst.plugin.validate(_sections(s, kind)[name], f"{kind}.{name}")
    _check_admins(s, catalog)
    for positive in ("member_per_minute", "group_per_minute", "max_input_chars", "concurrent_groups"):
        if getattr(s.limits, positive) <= 0:
            raise ConfigError(f"limits.{positive}", "must be greater than 0")
    for budget in ("daily_tokens_per_group", "daily_tokens_per_member", "daily_tokens", "daily_cost_usd",
                   "new_groups_per_hour"):
        if getattr(s.limits, budget) < 0:
            raise ConfigError(f"limits.{budget}", "must not be negative (0 means no limit)")
    m = s.metrics
    if m.enabled and m.port and m.host not in ("127.0.0.1", "localhost", "::1") and not m.access_token:
        raise ConfigError(
            "metrics.access_token",
            f"serving the metrics on {m.host} exposes them to the network; set an access_token first",
        )
    if s.log_format not in ("text", "json"):
        raise ConfigError("log_format", f"must be 'text' or 'json', got {s.log_format!r}")
    if not 0 <= s.limits.quiet_group_slots < s.limits.concurrent_groups:
        raise ConfigError("limits.quiet_group_slots", "must be at least 0 and less than limits.concurrent_groups")
    if s.llm.max_tool_rounds < 0 or s.llm.max_retries < 0:
        raise ConfigError("llm", "max_tool_rounds and max_retries must not be negative")


def host_timezone() -> str:
    """The host's local IANA time zone (tzlocal: the ``TZ`` variable, else the system's setting), or UTC
    when it cannot be told."""
    from zoneinfo import ZoneInfo

    import tzlocal

    try:
        # TZ first, read on every call (tzlocal caches the zone it found first for the whole process)
        name = os.environ.get("TZ", "").lstrip(":") or tzlocal.get_localzone_name()
        ZoneInfo(name or "")
    except Exception:  # noqa: BLE001 - an unreadable or odd host setting: fall back, never fail to start
        return "UTC"
    return str(name)


def _check_admins(s: Settings, catalog: plugin_api.PluginCatalog) -> None:
    unverified = {name for name, inst in catalog.adapters.items() if not inst.plugin.verified_identities}
    admin_lists = [("bot.admins", s.bot.admins)] + [(f'groups."{k}".admins', g.admins) for k, g in s.groups.items()]
    for path, ids in admin_lists:
        for i, ident in enumerate(ids):
            if ":" not in ident:
                raise ConfigError(f"{path}[{i}]", 'admins are "<platform>:<user id>", e.g. "<platform>:123456"')
            platform = ident.split(":", 1)[0]
            if platform in unverified:
                raise ConfigError(
                    f"{path}[{i}]", f"{platform} identities are not authenticated and cannot be admins"
                )


def _sections(s: Settings, kind: str) -> Sections:
    return getattr(s, kind)


def _plugin_sections(
    kind: str, raw: Any, catalog: plugin_api.PluginCatalog
) -> Sections:
    """``adapters:`` (or ``skills:``, ``tools:``): every installed plugin's section, validated against its
    schema; absent sections take the schema's defaults. A section no installed plugin claims is an error."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(kind, f"expected a mapping, got {raw!r}")
    installed = catalog.section(kind)
    for name in map(str, raw):
        if name not in installed:
            problem = catalog.problems.get(f"{kind}.{name}")
            if problem:
                raise ConfigError(f"{kind}.{name}", f"its plugin is installed but could not be loaded: {problem}")
            known = ", ".join(sorted(installed)) or "none"
            raise ConfigError(
                f"{kind}.{name}", f"unknown key: no installed plugin claims it (known keys here: {known})"
            )
    items = {name: _build(inst.plugin.settings, raw.get(name), f"{kind}.{name}") for name, inst in installed.items()}
    secrets = {name: tuple(inst.plugin.secret_keys) for name, inst in installed.items()}
    return Sections(items, secrets)


@dataclass(frozen=True)
class PaiEntry:
    """One ``pais.<name>`` entry written as a mapping."""

    groups: tuple[str, ...] = ()
    relay: bool = False


def _pais(raw: Any) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """``pais:``: each entry is a list of group keys (one shared memory) or ``{groups: [...], relay: bool}``."""
    if raw is None:
        return {}, ()
    if not isinstance(raw, dict):
        raise ConfigError("pais", f"expected a mapping, got {raw!r}")
    groups: dict[str, tuple[str, ...]] = {}
    relayed: set[str] = set()
    seen: dict[str, str] = {}
    for name, value in raw.items():
        path = f"pais.{name}"
        if isinstance(value, dict):
            entry = _build(PaiEntry, value, path)
        else:
            entry = PaiEntry(groups=_convert(tuple[str, ...], value, path))
        for i, key in enumerate(entry.groups):
            if ":" not in key:
                raise ConfigError(f"{path}[{i}]", 'group keys look like "<platform>:<chat id>"')
            if key in seen and seen[key] != str(name):
                raise ConfigError(f"{path}[{i}]", f"{key} is already in the pai {seen[key]!r}: a group is in one pai")
            seen[key] = str(name)
        groups[str(name)] = entry.groups
        if entry.relay:
            relayed.add(str(name))
    return groups, tuple(sorted(relayed))


def _check_timezone(path: str, name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(path, f"unknown time zone {name!r}") from exc


# --------------------------------------------------------------------------- entry points


def parse_settings(
    text: str,
    env: Mapping[str, str] | None = None,
    source: str = "config.yaml",
    plugins: plugin_api.PluginCatalog | None = None,
) -> Settings:
    """Parse config.yaml text. ``plugins`` are the installed plugins whose sections the file may hold
    (default: those found through entry points, ``bot.plugins.discover``)."""
    catalog = plugin_api.discover() if plugins is None else plugins
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    missing: dict[str, str] = {}
    raw = _interpolate(raw if raw is not None else {}, "", os.environ if env is None else env, missing)
    if not isinstance(raw, dict):
        raise ConfigError("", f"{source} must be a mapping of sections, got {raw!r}")
    owned = {kind: raw.pop(kind, None) for kind in PLUGIN_KINDS}
    if "relayed_pais" in raw:
        raise ConfigError("relayed_pais", "unknown key (write relay: true inside a pais.<name> entry)")
    groups, relayed = _pais(raw.pop("pais", None))
    settings = _build(Settings, raw, "")
    settings = dataclasses.replace(settings, pais=groups, relayed_pais=relayed)
    settings = dataclasses.replace(
        settings, **{kind: _plugin_sections(kind, value, catalog) for kind, value in owned.items()}
    )
    if not settings.bot.timezone:
        settings = dataclasses.replace(settings, bot=dataclasses.replace(settings.bot, timezone=host_timezone()))
    _check_semantics(settings, missing, catalog)
    return settings


def default_config_path() -> Path:
    return Path(os.environ.get("PAIBOT_CONFIG", "config.yaml"))


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    plugins: plugin_api.PluginCatalog | None = None,
) -> Settings:
    p = Path(path) if path else default_config_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("", f"no config file at {p} (copy the shipped config.yaml or pass --config)") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{p} is not UTF-8 text") from exc
    return parse_settings(text, env, source=str(p), plugins=plugins)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret replaced by ``***``."""

    def walk(value: Any, key: str = "", secret: frozenset[str] = frozenset(SECRET_KEYS)) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: walk(getattr(value, f.name), f.name, secret) for f in dataclasses.fields(value)}
        if isinstance(value, Sections):
            return {k: walk(v, k, secret | set(value.secret_keys(k))) for k, v in value.items()}
        if isinstance(value, dict):
            return {k: walk(v, k, secret) for k, v in value.items()}
        if isinstance(value, tuple):
            return [walk(v, "", secret) for v in value]
        if key in secret and value:
            return "***"
        return value

    return walk(settings)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (for log redaction)."""
    found: list[str] = []

    def walk(value: Any, key: str = "", secret: frozenset[str] = frozenset(SECRET_KEYS)) -> None:
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f.name, secret)
        elif isinstance(value, Sections):
            for k, v in value.items():
                walk(v, k, secret | set(value.secret_keys(k)))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k, secret)
        elif key in secret and isinstance(value, str) and len(value) >= 4:
            found.append(value)

    walk(settings)
    return found
