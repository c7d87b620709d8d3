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

from bot.commands import Command, CommandCall
from bot.i18n import N_, Translator
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool, ToolContext, ToolSpec
from bot.services import RUNTIME_SETTINGS, Services, parse_quiet_hours

RESET = ("reset", "default", "unset", "重置", "默认")
_MASS = re.compile(r"@(?:everyone|here|room|channel|all)\b", re.I)


class Invalid(ValueError):
    """A value a setting does not take: ``template`` (marked for translation) says why, with ``fields``."""

    def __init__(self, template: str, **fields: object) -> None:
        super().__init__(template.format(**fields))
        self.template = template
        self.fields = fields


def _name(v: str) -> str:
    if not 1 <= len(v) <= 32 or "\n" in v or "@" in v:
        raise Invalid(N_("a name is 1 to 32 characters on one line, without @"))
    return v


def _persona(v: str) -> str:
    if len(v) > 1500:
        raise Invalid(N_("a persona is at most 1500 characters"))
    if _MASS.search(v):
        raise Invalid(N_("a persona may not mention everyone"))
    return v


def _language(v: str) -> str:
    if len(v) > 30 or "\n" in v:
        raise Invalid(N_("a language is a short name like English, 中文 or auto"))
    return v


# Zones as people name them in chat ("北京时间", "上海", "UTC+8"); anything else must be an IANA name.
_ZONE_WORDS = {
    "北京": "Asia/Shanghai", "北京时间": "Asia/Shanghai", "上海": "Asia/Shanghai", "中国": "Asia/Shanghai",
    "中国时间": "Asia/Shanghai", "beijing": "Asia/Shanghai", "shanghai": "Asia/Shanghai", "china": "Asia/Shanghai",
    "香港": "Asia/Hong_Kong", "台北": "Asia/Taipei", "东京": "Asia/Tokyo", "首尔": "Asia/Seoul",
    "新加坡": "Asia/Singapore", "伦敦": "Europe/London", "巴黎": "Europe/Paris", "柏林": "Europe/Berlin",
    "纽约": "America/New_York", "洛杉矶": "America/Los_Angeles", "悉尼": "Australia/Sydney",
}


def _timezone(v: str) -> str:
    word = v.strip().casefold()
    v = _ZONE_WORDS.get(word) or _ZONE_WORDS.get(word.removesuffix("时间")) or v.strip()
    m = re.fullmatch(r"(?:utc|gmt)\s*([+-])\s*(\d{1,2})(?::00)?", v.strip(), re.I)
    if m and int(m.group(2)) <= 14:  # POSIX Etc zones count the other way round
        v = "UTC" if int(m.group(2)) == 0 else f"Etc/GMT{'-' if m.group(1) == '+' else '+'}{int(m.group(2))}"
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(N_("{value} is not a time zone (try Europe/Berlin or Asia/Shanghai)"), value=repr(v)) from exc
    return v


def _quiet(v: str) -> str:
    if v.lower() in ("off", "none", "关", "关闭", "无"):
        return "off"
    m = re.fullmatch(r"\s*(\d{1,2})(?:[:：点](\d{2})?)?\s*(?:-|到|至|~|～|—)\s*(\d{1,2})(?:[:：点](\d{2})?)?\s*", v)
    if m:  # "23点到7点", "23:00到07:00"
        v = f"{int(m.group(1)):02d}:{m.group(2) or '00'}-{int(m.group(3)):02d}:{m.group(4) or '00'}"
    if parse_quiet_hours(v) is None:
        raise Invalid(N_("quiet hours look like 23:00-07:00 (or off)"))
    return v.replace(" ", "")


def _switch(v: str) -> str:
    low = v.lower()
    if low in ("on", "yes", "true", "开", "开启"):
        return "on"
    if low in ("off", "no", "false", "关", "关闭"):
        return "off"
    raise Invalid(N_("use on or off"))


def _days(v: str) -> str:
    if not v.isdigit() or int(v) > 36500:
        raise Invalid(N_("retention is a number of days (0 keeps everything)"))
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
                N_("Show this group's settings; admins change them"),
                self._cmd,
                usage=N_("/settings [name|persona|language|timezone|quiet_hours|proactive|retention_days <value>]"),
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
        t = await self.s.translator(group_key)
        runtime = self.s.runtime_settings(group_key)
        config = self.s.settings.group(group_key)
        lines = [t._("Settings in this group (admins: /settings <name> <value>, or <name> reset):")]
        for name in RUNTIME_SETTINGS:
            value = self.s.group_setting(group_key, name)
            if name in runtime:
                source = t._("set here")
            elif getattr(config, name) not in (None, ""):
                source = "config.yaml"
            else:
                source = t._("default")
            shown = _display(name, value, t)
            lines.append(t._("{name}: {value} ({source})", name=name, value=shown, source=source))
        return "\n".join(lines)

    async def change(self, group_key: str, name: str, value: str, is_admin: bool) -> str:
        t = await self.s.translator(group_key)
        if not is_admin:
            return t._("Only admins of this group can change its settings.")
        name = name.lower().replace("-", "_")
        if name not in VALIDATORS:
            return t._("There is no setting {name}. Settings: {names}.", name=repr(name),
                       names=t.commas(RUNTIME_SETTINGS))
        value = value.strip()
        if not value:
            return t._("Usage: /settings {name} <value> (or reset)", name=name)
        if value.lower() in RESET:
            await self.s.set_group_setting(group_key, name, "")
            t = await self.s.translator(group_key)  # the language itself may have changed
            return t._("{name} is back to {value}.", name=name, value=_display(name, self.s.group_setting(group_key, name), t))
        try:
            clean = VALIDATORS[name](value)
        except Invalid as exc:
            return t._("Not changed: {why}.", why=t._(exc.template, **exc.fields))
        await self.s.set_group_setting(group_key, name, clean)
        t = await self.s.translator(group_key)
        return t._("{name} is now {value}.", name=name, value=_display(name, self.s.group_setting(group_key, name), t))

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
        key = ctx.message.chat.key
        if ctx.caller_is_admin:
            return await self.change(key, name, value, True)
        t = await self.s.translator(key)
        name = name.lower().replace("-", "_")
        if name in VALIDATORS and value and value.lower() not in RESET:
            try:
                value = VALIDATORS[name](value)  # "北京时间" -> Asia/Shanghai: the command works as written
            except Invalid as exc:
                return t._("Not changed: {why}.", why=t._(exc.template, **exc.fields))
        command = " ".join(("/settings", name, value)).rstrip()
        return t._("Not changed: group settings change only when an admin of this group sends the command "
                   "themselves: {command}", command=command)


def _display(name: str, value: Any, t: Translator) -> str:
    if name == "persona":
        text = " ".join(t._(str(value)).split())  # the shipped persona is shown in the reader's language
        return text if len(text) <= 90 else text[:89] + "…"
    if name == "proactive":
        return t._("on") if value else t._("off")
    if name == "quiet_hours":
        return str(value) if value and value != "off" else t._("off")
    if name == "retention_days":
        days = int(value or 0)
        return t.ngettext("{n} day", "{n} days", days) if days > 0 else t._("0 (keep everything)")
    return str(value)


def build(env: SkillEnv) -> SkillSet:
    from bot.skills.proactive import ProactiveSkill

    return SkillSet([SettingsSkill(env.services), ProactiveSkill(env.services)])


plugin = SkillPlugin(
    name="settings",
    build=build,
    order=70,
    description="per-group /settings and proactive hints",
)
