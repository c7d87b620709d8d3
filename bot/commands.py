"""Slash commands and LLM tools: the registry skills plug into.

A ``Command`` works without an LLM (``/help``, ``/search``, ``/remind in 2h ...``); a ``Tool`` is what the
LLM may call. Both receive the trusted envelope (the message, its pai, whether the caller is an admin) and
check the caller's authority themselves. A skill is any object with ``commands()`` and ``tools()``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.events import Message
from bot.ports import CommandInfo, Tool

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("paibot.commands")


class ToolSource(Protocol):
    """Tools that depend on the group (``bot.plugins.ToolProvider``): no I/O, fast, never raises."""

    def tools_for(self, group_key: str) -> Sequence[Tool]: ...


@dataclass(frozen=True, slots=True)
class CommandCall:
    message: Message
    args: str
    pai: str
    is_admin: bool
    services: Services


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers: text, and optionally files or a poll (see ``bot.events.Outgoing``)."""

    text: str
    outgoing_extra: dict[str, object] | None = None


HANDLED = Reply("")  # an observer's answer meaning "dealt with, say nothing"

CommandHandler = Callable[[CommandCall], Awaitable["str | Reply | None"]]


@dataclass(frozen=True, slots=True)
class Observation:
    """What an observer sees of every message of a served group (the bot's own excepted), after it was
    recorded and the policy decided. ``decision.speak`` tells whether the member was addressed."""

    message: Message
    pai: str
    decision: object  # bot.policy.Decision
    reply_to_me: bool
    services: Services
    # False when the member's rate limits or the group's budget refuse an answer to this message now: an
    # observer may still ingest it (files, captions, votes) but must not spend model calls to answer it.
    may_answer: bool = True
    # False when the author opted out of recording here (``/optout``): an observer must not keep anything
    # of the message (no file text, caption or attachment row); it may still act on it (count a vote).
    may_record: bool = True


# An observer may answer a message itself (e.g. a reply to the to-do list marking an item done): returning
# text or a Reply sends it as the member's reply and ends the pipeline for that message. Observers run in
# registration order; most return None (file ingestion, image captions, proactive hints). Returning
# ``HANDLED`` ends the pipeline without a reply (e.g. a vote counted silently).
Observer = Callable[[Observation], Awaitable["str | Reply | None"]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str
    handler: CommandHandler
    usage: str = ""
    admin_only: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def info(self) -> CommandInfo:
        return CommandInfo(self.name, self.description, self.usage)


class Skill(Protocol):
    """A bundle of commands and tools (reminders, polls, summaries...). A skill may also have an
    ``observers()`` method returning ``Observer`` callables."""

    def commands(self) -> Iterable[Command]: ...

    def tools(self) -> Iterable[Tool]: ...


class CommandRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}
        self._primary: list[Command] = []
        self._tools: dict[str, Tool] = {}
        self._observers: list[Observer] = []
        self._sources: list[ToolSource] = []

    def add(self, command: Command) -> None:
        for name in (command.name, *command.aliases):
            key = name.lower().replace("-", "_")
            if key in self._by_name:
                raise ValueError(f"command /{name} is registered twice")
            self._by_name[key] = command
        self._primary.append(command)

    def add_tool(self, tool: Tool) -> None:
        if tool.spec.name in self._tools:
            raise ValueError(f"tool {tool.spec.name} is registered twice")
        self._tools[tool.spec.name] = tool

    def add_skill(self, skill: Skill) -> None:
        for c in skill.commands():
            self.add(c)
        for t in skill.tools():
            self.add_tool(t)
        for o in getattr(skill, "observers", lambda: [])():
            self._observers.append(o)

    def add_tool_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    def observers(self) -> list[Observer]:
        return list(self._observers)

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name.lower().replace("-", "_"))

    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def commands(self) -> list[Command]:
        return list(self._primary)

    def tools(self) -> list[Tool]:
        """The skills' tools (the same in every group)."""
        return list(self._tools.values())

    def tools_for(self, group_key: str) -> list[Tool]:
        """The tools offered to the model in one group: the skills' tools, then those of the tool sources
        enabled there (a name already taken keeps its first tool)."""
        tools = dict(self._tools)
        for source in self._sources:
            try:
                offered = list(source.tools_for(group_key))
            except Exception:  # a broken source must not take the skills' tools down with it
                log.exception("a tool source failed to list its tools for %s", group_key)
                continue
            for tool in offered:
                tools.setdefault(tool.spec.name, tool)
        return list(tools.values())

    def infos(self) -> tuple[CommandInfo, ...]:
        return tuple(c.info for c in self._primary)
