"""The member's skills: each module here exposes ``build(services, registry) -> (skills, background)``
where ``skills`` are ``bot.commands.Skill`` objects (commands, LLM tools, observers) and ``background`` are
long-running services with async ``start()``/``stop()`` (e.g. the reminder scheduler)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from bot.commands import CommandRegistry, Skill
from bot.services import Services

# Listed in the order their commands appear in /help.
SKILL_MODULES = (
    "bot.skills.summary",
    "bot.skills.reminders",
    "bot.skills.polls",
    "bot.skills.files",
    "bot.skills.images",
    "bot.skills.factcheck",
    "bot.skills.settings",
    "bot.skills.admins",
    "bot.skills.privacy",
)


def default_skills(services: Services, registry: CommandRegistry) -> tuple[list[Skill], list[Any]]:
    skills: list[Skill] = []
    background: list[Any] = []
    for name in SKILL_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        s, b = module.build(services, registry)
        skills.extend(s)
        background.extend(b)
    return skills, background
