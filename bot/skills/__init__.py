"""The member's built-in skills. Each module here exposes ``build(services, registry) -> (skills,
background)`` where ``skills`` are ``bot.commands.Skill`` objects (commands, LLM tools, observers) and
``background`` are long-running services with async ``start()``/``stop()`` (e.g. the reminder scheduler), and
a ``plugin`` (``bot.plugins.SkillPlugin``) registered under the ``paibot.skills`` entry-point group in
pyproject.toml, exactly like a third-party skill. ``skills.<name>.enabled: false`` turns one off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.commands import CommandRegistry
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.services import Services

Build = Callable[[Services, CommandRegistry], "tuple[list[Any], list[Any]]"]


def builtin(name: str, build: Build, order: int, description: str) -> SkillPlugin:
    """The plugin of a built-in skill module (its ``build`` adapted to the plugin interface)."""

    def build_set(env: SkillEnv) -> SkillSet:
        skills, background = build(env.services, env.registry)
        return SkillSet(skills, background)

    return SkillPlugin(name=name, build=build_set, order=order, description=description)
