"""MCP tools: servers speaking the Model Context Protocol offer their tools to the model (the ``mcp`` tool
plugin, ``tools.mcp`` in config.yaml), through the official ``mcp`` Python SDK (client side).

    tools:
      mcp:
        servers:
          weather:
            command: [python, -m, weather_server]     # stdio: the server is a child process
            env: {API_KEY: "${WEATHER_KEY}"}
            groups: ["telegram:-100123"]               # where its tools are offered (default: nowhere)
          calendar:
            url: http://127.0.0.1:9000/mcp             # streamable HTTP
            timeout_s: 15
            admin_tools: [delete_event]                # never offered to the model

Each server is connected at start-up and its tools listed (``list_tools``); a server that cannot be
started, does not answer in ``timeout_s`` or answers garbage is logged and left out: the others and the bot
carry on. A tool is offered to the model as ``<server>__<tool>`` with the server's JSON schema, only in the
server's ``groups``. A call is bounded in time (``timeout_s``) and in output (``max_output_chars``) and never
raises: a hanging, crashed or misbehaving server becomes a short explanation the model passes on, while
other groups are answered meanwhile (each chat has its own lane). Every tool is labelled with its source,
so an answer built on it says which tool it came from.

Admin rights are never exercised through the model (the confused-deputy rule in ``bot.member``): a tool
listed in ``admin_tools`` is simply never offered to the model, in any group.

Each server's session lives in a task of its own (the SDK's transports are context managers that must be
entered and left in one task); calls from the member's lanes go through that session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.plugins import ToolEnv, ToolPlugin
from bot.ports import Tool, ToolContext, ToolSpec

log = logging.getLogger("paibot.mcp")

_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class McpServerSettings:
    """One server under ``tools.mcp.servers.<name>``: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    command: tuple[str, ...] = ()
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 20.0  # per call (and per listing)
    connect_timeout_s: float = 30.0  # to start (a child process) or reach (a URL) and initialise
    groups: tuple[str, ...] = ()
    admin_tools: tuple[str, ...] = ()
    max_output_chars: int = 4000


@dataclass(frozen=True)
class McpSettings:
    enabled: bool = True
    servers: dict[str, McpServerSettings] = field(default_factory=dict)


def validate(cfg: McpSettings, path: str) -> None:
    for name, s in cfg.servers.items():
        where = f'{path}.servers."{name}"'
        if bool(s.command) == bool(s.url):
            raise ConfigError(where, "give either command (a stdio server) or url (a streamable-HTTP server)")
        if s.url and not s.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url", f"must be an http(s) URL, got {s.url!r}")
        if min(s.timeout_s, s.connect_timeout_s, s.max_output_chars) <= 0:
            raise ConfigError(
                where, "timeout_s, connect_timeout_s and max_output_chars must be greater than 0"
            )
        for i, key in enumerate(s.groups):
            if ":" not in key:
                raise ConfigError(f"{where}.groups[{i}]", 'group keys look like "<platform>:<chat id>"')


class McpServer:
    """One connected server: its session lives in ``_run``; ``tools`` are what it listed."""

    def __init__(self, name: str, cfg: McpServerSettings) -> None:
        self.name = name
        self.cfg = cfg
        self.tools: list[Tool] = []
        self.problem = ""
        self._session: Any = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.cfg.connect_timeout_s)
        if self._session is None:
            self.problem = self.problem or f"did not start within {self.cfg.connect_timeout_s:g}s"
            log.warning("MCP server %s left out: %s", self.name, self.problem)
            await self.stop()
            return
        try:
            listed = await asyncio.wait_for(self._session.list_tools(), self.cfg.timeout_s)
            self.tools = [self._tool(t) for t in listed.tools if t.name not in self.cfg.admin_tools]
        except Exception as exc:  # noqa: BLE001 - a server answering garbage is left out, never fatal
            self.problem = f"could not list its tools ({type(exc).__name__}: {exc})"
            log.warning("MCP server %s left out: %s", self.name, self.problem)
            self.tools = []
            await self.stop()
            return
        log.info(
            "MCP server %s: %d tools (%s)",
            self.name,
            len(self.tools),
            ", ".join(t.spec.name for t in self.tools),
        )

    async def _run(self) -> None:
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self._session = session
                self._ready.set()
                await self._closing.wait()
        except Exception as exc:  # noqa: BLE001 - a transport failing ends this server, not the bot
            self.problem = self.problem or f"{type(exc).__name__}: {exc}"
            log.warning("MCP server %s stopped: %s", self.name, self.problem)
        finally:
            self._session = None
            self._ready.set()

    def _transport(self) -> Any:
        if self.cfg.url:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(self.cfg.url)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=self.cfg.command[0], args=list(self.cfg.command[1:]),
                                       env=dict(self.cfg.env) or None)  # fmt: skip
        return stdio_client(params)

    def _tool(self, listed: Any) -> Tool:
        name = _NAME.sub("_", f"{self.name}__{listed.name}")[:64]
        schema = getattr(listed, "input_schema", None)
        schema = schema if isinstance(schema, dict) else {"type": "object"}
        spec = ToolSpec(name, (listed.description or listed.name)[:1000], schema)
        label = f"{self.name}/{listed.name}"

        async def run(args: dict[str, Any], ctx: ToolContext) -> str:
            if ctx.message.chat.key not in self.cfg.groups:  # offered per group; checked again here
                return f"error: the tool {label} is not enabled in this group"
            return await self.call(listed.name, args, label)

        return Tool(spec, run, source=f"MCP {label}")

    async def call(self, tool: str, args: dict[str, Any], label: str) -> str:
        session = self._session
        if session is None:
            why = self.problem or "not running"
            return f"error: the tool {label} is unavailable (its server stopped: {why})"
        try:
            result = await asyncio.wait_for(session.call_tool(tool, args), self.cfg.timeout_s)
        except asyncio.TimeoutError:
            return f"error: the tool {label} did not answer within {self.cfg.timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 - crashed or garbage: an explanation, never an exception
            return f"error: the tool {label} failed ({type(exc).__name__}: {str(exc)[:200]})"
        text = "\n".join(_text_of(c) for c in getattr(result, "content", []) or [])
        if getattr(result, "is_error", False):
            text = f"error from {label}: {text}"
        limit = self.cfg.max_output_chars
        if len(text) > limit:
            text = text[:limit] + f"… (cut at {limit} characters)"
        return text or "(the tool returned nothing)"

    def tools_for(self, group_key: str) -> list[Tool]:
        return self.tools if group_key in self.cfg.groups and self._session is not None else []

    async def stop(self) -> None:
        self._closing.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - a server that will not close is cut off
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def _text_of(content: Any) -> str:
    text = getattr(content, "text", None)
    if isinstance(text, str):
        return text
    try:
        return json.dumps(content.model_dump(mode="json"), ensure_ascii=False)[:500]
    except Exception:  # noqa: BLE001
        return f"[{type(content).__name__}]"


class McpTools:
    """The ``ToolProvider`` of every configured MCP server."""

    def __init__(self, cfg: McpSettings) -> None:
        self.servers = [McpServer(name, s) for name, s in cfg.servers.items()]

    async def start(self) -> None:
        await asyncio.gather(*(s.start() for s in self.servers))

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers), return_exceptions=True)

    def tools_for(self, group_key: str) -> Sequence[Tool]:
        return [t for s in self.servers for t in s.tools_for(group_key)]


def create(cfg: McpSettings, env: ToolEnv) -> McpTools:
    return McpTools(cfg)


plugin = ToolPlugin(
    name="mcp",
    settings=McpSettings,
    create=create,
    validate=validate,
    description="tools of MCP servers (stdio or streamable HTTP), per group",
)
