"""Persona and per-group settings: ``/settings`` and the ``update_group_setting`` tool.

    /settings                          shows the effective settings and where each comes from
    /settings name Robo                /settings persona You are a terse pirate.
    /settings language 中文             /settings timezone Europe/Berlin
    /settings quiet_hours 23:00-07:00  /settings proactive on        /settings retention_days 90
    /settings timezone reset           (back to config.yaml)

Changing a setting needs a group admin (configured admin ids or the platform's admin role, checked by the
member pipeline into ``CommandCall.is_admin`` / ``ToolContext.caller_is_admin``). Values live in the core's
group_kv (``Services.set_group_setting``) and take precedence over ``groups.<key>`` in config.yaml, which
takes precedence over the bot-wide values; the member pipeline reads them through ``Services``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.commands import Command, CommandCall, CommandRegistry
from bot.ports import Tool, ToolContext, ToolSpec
from bot.services import RUNTIME_SETTINGS, Services, parse_quiet_hours
from bot.skills import builtin

RESET = ("reset", "default", "unset", "重置", "默认")
_MASS = re.compile(r"@(?:everyone|here|room|channel|all)\b", re.I)


def _name(v: str) -> str:
    if not 1 <= len(v) <= 32 or "\n" in v or "@" in v:
        raise ValueError("a name is 1 to 32 characters on one line, without @")
    return v


def _persona(v: str) -> str:
    if len(v) > 1500:
        raise ValueError("a persona is at most 1500 characters")
    if _MASS.search(v):
        raise ValueError("a persona may not mention everyone")
    return v


def _language(v: str) -> str:
    if len(v) > 30 or "\n" in v:
        raise ValueError("a language is a short name like English, 中文 or auto")
    return v


def _timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{v!r} is not a time zone (try Europe/Berlin or Asia/Shanghai)") from exc
    return v


def _quiet(v: str) -> str:
    if v.lower() in ("off", "none", "关"):
        return "off"
    if parse_quiet_hours(v) is None:
        raise ValueError("quiet hours look like 23:00-07:00 (or off)")
    return v.replace(" ", "")


def _switch(v: str) -> str:
    low = v.lower()
    if low in ("on", "yes", "true", "开", "开启"):
        return "on"
    if low in ("off", "no", "false", "关", "关闭"):
        return "off"
    raise ValueError("use on or off")


def _days(v: str) -> str:
    if not v.isdigit() or int(v) > 36500:
        raise ValueError("retention is a number of days (0 keeps everything)")
    return str(int(v))


VALIDATORS: dict[str, Callable[[str], str]] = {
    "name": _name,
    "persona": _persona,
    "language": _language,
    "timezone": _timezone,
    "quiet_hours": _quiet,
    "proactive": _switch,
    "retention_days": _days,
}
assert set(VALIDATORS) == set(RUNTIME_SETTINGS)


class SettingsSkill:
    def __init__(self, services: Services) -> None:
        self.s = services

    def commands(self) -> Iterable[Command]:
        return [
            Command(
                "settings",
                "Show this group's settings; admins change them",
                self._cmd,
                usage="/settings [name|persona|language|timezone|quiet_hours|proactive|retention_days <value>]",
            )
        ]

    def tools(self) -> Iterable[Tool]:
        return [
            Tool(
                ToolSpec(
                    "update_group_setting",
                    "Change one of this group's settings (group admins only).",
                    {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "enum": list(RUNTIME_SETTINGS)},
                            "value": {"type": "string"},
                        },
                        "required": ["name", "value"],
                    },
                ),
                self._tool,
            )
        ]

    async def show(self, group_key: str) -> str:
        await self.s.load_group(group_key)
        runtime = self.s.runtime_settings(group_key)
        config = self.s.settings.group(group_key)
        lines = ["Settings in this group (admins: /settings <name> <value>, or <name> reset):"]
        for name in RUNTIME_SETTINGS:
            value = self.s.group_setting(group_key, name)
            if name in runtime:
                source = "set here"
            elif getattr(config, name) not in (None, ""):
                source = "config.yaml"
            else:
                source = "default"
            shown = _display(name, value)
            lines.append(f"{name}: {shown} ({source})")
        return "\n".join(lines)

    async def change(self, group_key: str, name: str, value: str, is_admin: bool) -> str:
        if not is_admin:
            return "Only admins of this group can change its settings."
        name = name.lower().replace("-", "_")
        if name not in VALIDATORS:
            return f"There is no setting {name!r}. Settings: {', '.join(RUNTIME_SETTINGS)}."
        value = value.strip()
        if not value:
            return f"Usage: /settings {name} <value> (or reset)"
        if value.lower() in RESET:
            await self.s.set_group_setting(group_key, name, "")
            return f"{name} is back to {_display(name, self.s.group_setting(group_key, name))}."
        try:
            clean = VALIDATORS[name](value)
        except ValueError as exc:
            return f"Not changed: {exc}."
        await self.s.set_group_setting(group_key, name, clean)
        return f"{name} is now {_display(name, self.s.group_setting(group_key, name))}."

    async def _cmd(self, call: CommandCall) -> str:
        key = call.message.chat.key
        if not call.args.strip():
            return await self.show(key)
        name, _, value = call.args.strip().partition(" ")
        return await self.change(key, name, value, call.is_admin)

    async def _tool(self, args: dict[str, Any], ctx: ToolContext) -> str:
        # The group is the caller's (the envelope), never the arguments'. Settings change only through an
        # admin's own /settings command: a model could have been talked into this call by any text it read.
        name, value = str(args.get("name", "")).strip(), " ".join(str(args.get("value", "")).split())
        if ctx.caller_is_admin:
            return await self.change(ctx.message.chat.key, name, value, True)
        return (
            "Not changed: group settings change only when an admin of this group sends the command "
            f"themselves: /settings {name} {value}".rstrip()
        )


def _display(name: str, value: Any) -> str:
    if name == "persona":
        text = " ".join(str(value).split())
        return text if len(text) <= 90 else text[:89] + "…"
    if name == "proactive":
        return "on" if value else "off"
    if name == "quiet_hours":
        return str(value) if value and value != "off" else "off"
    if name == "retention_days":
        return f"{value} days" if int(value or 0) > 0 else "0 (keep everything)"
    return str(value)


def build(services: Services, registry: CommandRegistry) -> tuple[list[Any], list[Any]]:
    from bot.skills.proactive import ProactiveSkill

    return [SettingsSkill(services), ProactiveSkill(services)], []


plugin = builtin("settings", build, 70, "per-group /settings and proactive hints")
