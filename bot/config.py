"""config.yaml parsed once into validated, frozen settings.

Loading goes: YAML text -> ``${VAR}`` / ``${VAR:-default}`` interpolation from the environment -> validation
against the dataclasses below (by their type hints) -> frozen ``Settings``. Every problem raises
``ConfigError`` naming the key path (``adapters.telegram.token``). Unknown keys are errors, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError

# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class BotSettings:
    name: str = "Pai"
    aliases: tuple[str, ...] = ()
    persona: str = (
        "You are {name}, a friendly, concise member of this group chat. You have been listening to the whole "
        "conversation. Answer like a helpful member: short, concrete, in the language the group uses."
    )
    language: str = "auto"
    timezone: str = "UTC"
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


@dataclass(frozen=True)
class WebAdapterSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    access_token: str = ""
    public_url: str = ""


@dataclass(frozen=True)
class WebhookSettings:
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 8443
    url_path: str = "telegram"
    webhook_url: str = ""
    secret_token: str = ""


@dataclass(frozen=True)
class TelegramAdapterSettings:
    enabled: bool = False
    token: str = ""
    base_url: str = ""
    base_file_url: str = ""
    poll_timeout_s: int = 30
    webhook: WebhookSettings = WebhookSettings()


@dataclass(frozen=True)
class DiscordAdapterSettings:
    enabled: bool = False
    token: str = ""
    application_id: str = ""
    api_base: str = ""
    gateway_url: str = ""
    backfill_limit: int = 200


@dataclass(frozen=True)
class MatrixAdapterSettings:
    enabled: bool = False
    homeserver: str = ""
    user_id: str = ""
    password: str = ""
    access_token: str = ""
    device_id: str = ""
    device_name: str = "paibot"
    allowed_inviters: tuple[str, ...] = ()  # user ids or ":server" suffixes; empty = nobody (fail-closed)
    command_prefixes: tuple[str, ...] = ("!", "/")


@dataclass(frozen=True)
class AdapterSettings:
    web: WebAdapterSettings = WebAdapterSettings()
    telegram: TelegramAdapterSettings = TelegramAdapterSettings()
    discord: DiscordAdapterSettings = DiscordAdapterSettings()
    matrix: MatrixAdapterSettings = MatrixAdapterSettings()


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


@dataclass(frozen=True)
class Settings:
    bot: BotSettings = BotSettings()
    llm: LLMSettings = LLMSettings()
    memory: MemorySettings = MemorySettings()
    triggers: TriggerSettings = TriggerSettings()
    access: AccessSettings = AccessSettings()
    limits: LimitSettings = LimitSettings()
    search: SearchSettings = SearchSettings()
    adapters: AdapterSettings = AdapterSettings()
    groups: dict[str, GroupOverride] = field(default_factory=dict)
    pais: dict[str, tuple[str, ...]] = field(default_factory=dict)
    log_level: str = "INFO"

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


def _check_semantics(s: Settings, missing: dict[str, str]) -> None:
    def enabled_prefixes() -> list[str]:
        out = ["bot", "memory", "triggers", "access", "limits", "search", "groups", "pais"]
        if s.llm.model:
            out.append("llm")
        for name in ("web", "telegram", "discord", "matrix"):
            if getattr(s.adapters, name).enabled:
                out.append(f"adapters.{name}")
        return out

    live = enabled_prefixes()
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
    web = s.adapters.web
    if web.enabled and web.host not in ("127.0.0.1", "localhost", "::1") and not web.access_token:
        raise ConfigError(
            "adapters.web.access_token",
            f"binding the web group to {web.host} exposes it to the network; set an access_token first",
        )
    for name, field_name in (("telegram", "token"), ("discord", "token")):
        a = getattr(s.adapters, name)
        if a.enabled and not getattr(a, field_name):
            raise ConfigError(f"adapters.{name}.{field_name}", f"{name} is enabled but has no {field_name}")
    m = s.adapters.matrix
    if m.enabled:
        if not m.homeserver or not m.user_id:
            raise ConfigError("adapters.matrix", "matrix is enabled but homeserver or user_id is empty")
        if not (m.password or m.access_token):
            raise ConfigError("adapters.matrix.password", "matrix needs a password or an access_token")
    admin_lists = [("bot.admins", s.bot.admins)] + [(f'groups."{k}".admins', g.admins) for k, g in s.groups.items()]
    for path, ids in admin_lists:
        for i, ident in enumerate(ids):
            if ident.startswith("web:"):
                raise ConfigError(f"{path}[{i}]", "web group identities are not authenticated and cannot be admins")
            if ":" not in ident:
                raise ConfigError(f"{path}[{i}]", 'admins are "<platform>:<user id>", e.g. "telegram:123456"')
    for positive in ("member_per_minute", "group_per_minute", "max_input_chars", "concurrent_groups"):
        if getattr(s.limits, positive) <= 0:
            raise ConfigError(f"limits.{positive}", "must be greater than 0")
    for budget in ("daily_tokens_per_group", "daily_tokens_per_member", "daily_tokens", "daily_cost_usd",
                   "new_groups_per_hour"):
        if getattr(s.limits, budget) < 0:
            raise ConfigError(f"limits.{budget}", "must not be negative (0 means no limit)")
    if not 0 <= s.limits.quiet_group_slots < s.limits.concurrent_groups:
        raise ConfigError("limits.quiet_group_slots", "must be at least 0 and less than limits.concurrent_groups")
    if s.llm.max_tool_rounds < 0 or s.llm.max_retries < 0:
        raise ConfigError("llm", "max_tool_rounds and max_retries must not be negative")


def _check_timezone(path: str, name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(path, f"unknown time zone {name!r}") from exc


# --------------------------------------------------------------------------- entry points


def parse_settings(text: str, env: Mapping[str, str] | None = None, source: str = "config.yaml") -> Settings:
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    missing: dict[str, str] = {}
    raw = _interpolate(raw if raw is not None else {}, "", os.environ if env is None else env, missing)
    settings = _build(Settings, raw, "")
    _check_semantics(settings, missing)
    return settings


def default_config_path() -> Path:
    return Path(os.environ.get("PAIBOT_CONFIG", "config.yaml"))


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    p = Path(path) if path else default_config_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("", f"no config file at {p} (copy the shipped config.yaml or pass --config)") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{p} is not UTF-8 text") from exc
    return parse_settings(text, env, source=str(p))


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret replaced by ``***``."""

    def walk(value: Any, key: str = "") -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: walk(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, tuple):
            return [walk(v) for v in value]
        if key in SECRET_KEYS and value:
            return "***"
        return value

    return walk(settings)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (for log redaction)."""
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f.name)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif key in SECRET_KEYS and isinstance(value, str) and len(value) >= 4:
            found.append(value)

    walk(settings)
    return found
