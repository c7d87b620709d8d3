"""paibot's ``dice`` skill plugin: ``/roll [NdM]`` and the ``roll_dice`` tool.

A skill gets its own validated section (``skills.dice``) and the core's shared handles (``SkillEnv``); it
returns its ``Skill`` objects. Randomness comes from the core's injected random source, so tests can seed it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.commands import Command, CommandCall
from bot.errors import ConfigError
from bot.plugins import SkillEnv, SkillPlugin, SkillSet
from bot.ports import Tool, ToolContext, ToolSpec


@dataclass(frozen=True)
class DiceSettings:
    """``skills.dice`` in config.yaml."""

    enabled: bool = True
    sides: int = 6  # of a die when the roll does not say
    max_dice: int = 20


def validate(cfg: DiceSettings, path: str) -> None:
    if cfg.sides < 2:
        raise ConfigError(f"{path}.sides", "a die has at least 2 sides")
    if not 1 <= cfg.max_dice <= 1000:
        raise ConfigError(f"{path}.max_dice", "must be between 1 and 1000")


class DiceSkill:
    def __init__(self, cfg: DiceSettings, rng: random.Random) -> None:
        self._cfg = cfg
        self._rng = rng

    def commands(self) -> Iterable[Command]:
        return [Command("roll", "Roll dice", self._roll, usage="/roll [NdM], e.g. /roll 2d6")]

    def tools(self) -> Iterable[Tool]:
        spec = ToolSpec(
            "roll_dice",
            "Roll dice for the group when a member asks for a random roll. Returns the rolls and their sum.",
            {
                "type": "object",
                "properties": {
                    "count": {"type": "integer", "minimum": 1, "description": "how many dice"},
                    "sides": {"type": "integer", "minimum": 2, "description": "sides of each die"},
                },
            },
        )
        return [Tool(spec, self._tool)]

    def roll(self, count: int, sides: int) -> str:
        if not 1 <= count <= self._cfg.max_dice or sides < 2:
            return f"I can roll 1 to {self._cfg.max_dice} dice of at least 2 sides."
        rolls = [self._rng.randint(1, sides) for _ in range(count)]
        shown = " + ".join(map(str, rolls))
        return f"🎲 {count}d{sides}: {shown} = {sum(rolls)}" if count > 1 else f"🎲 d{sides}: {rolls[0]}"

    async def _roll(self, call: CommandCall) -> str:
        m = re.fullmatch(r"\s*(\d*)\s*(?:d\s*(\d+))?\s*", call.args.lower())
        if m is None:
            return "Usage: /roll [NdM], e.g. /roll 2d6"
        return self.roll(int(m.group(1) or 1), int(m.group(2) or self._cfg.sides))

    async def _tool(self, args: dict[str, Any], ctx: ToolContext) -> str:
        return json.dumps(
            {"result": self.roll(int(args.get("count") or 1), int(args.get("sides") or self._cfg.sides))}
        )


def build(env: SkillEnv) -> SkillSet:
    return SkillSet(skills=[DiceSkill(env.settings, env.services.rng)])


plugin = SkillPlugin(
    name="dice", build=build, settings=DiceSettings, validate=validate, description="example: /roll dice"
)
