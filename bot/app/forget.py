"""``paibot memory forget``: the operator's way to forget a member (or messages), through every store.

It runs with the bot stopped (it takes the data-directory lock) and opens what ``App`` would: the core's
state (inbox, reply ledger), the memory, the skills' stores and the adapters that keep messages themselves
(the web group), none of them serving. Then the same ``bot.erasure.Forgetter`` as ``/forget-me`` runs, so
the two cannot disagree about what is forgotten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import replace
from typing import Any

from bot.app.datadir import make_private
from bot.clock import SystemClock
from bot.config import Settings
from bot.erasure import Forgetter, Report, member_scope, memory_eraser
from bot.errors import DataDirLocked, PaibotError
from bot.ports import Erasure
from bot.services import Services
from bot.skills.resources import SkillResources
from bot.state import StateDB


def forget_command(args: argparse.Namespace, settings: Settings) -> int:
    """``paibot memory forget --group KEY (--author ID | --id MESSAGE_ID ...)``; returns the exit code."""
    if not args.author and not args.ids:
        print("paibot memory forget: give --author ID and/or --id MESSAGE_ID", file=sys.stderr)
        return 1
    settings = getattr(settings, "settings", settings)  # ``bot.pais.WithChatPais``: the pais are read below
    pai, chats = member_scope(settings, args.group)
    erasure = Erasure(pai, chats, author_id=args.author or None, message_ids=tuple(args.ids))
    try:
        report = asyncio.run(forget_offline(settings, erasure, group=args.group))
    except DataDirLocked as exc:
        print(f"paibot memory: {exc}", file=sys.stderr)
        return 2
    except PaibotError as exc:
        print(f"paibot memory: {exc}", file=sys.stderr)
        return 1
    done = ", ".join(f"{n} {kind}" for kind, n in sorted(report.counts.items())) or "nothing to forget"
    print(f"forgot {report.counts.get('messages', 0)} messages ({done})")
    if report.failed:
        print(f"paibot memory forget: could not reach {', '.join(report.failed)}; run it again", file=sys.stderr)
        return 1
    return 0


async def forget_offline(settings: Settings, erasure: Erasure, group: str | None = None) -> Report:
    """Open every store of the data directory (nothing serving), forget, close. With ``group``, the erasure
    covers that group's pai as the bot sees it (pais made from chat too). The relay's copies of what is
    forgotten are queued for deletion: they are deleted on their platforms when the bot runs again."""
    from memory import acquire_data_dir_lock, open_memory

    make_private(settings.data_path)
    lock = acquire_data_dir_lock(settings.data_path)
    closing: list[Any] = []
    try:
        state = StateDB(settings.data_path / "paibot.db")
        closing.append(state)
        from bot.providers.litellm_llm import load_litellm
        from memory.kinds import KindRules

        memory = await open_memory(settings, load_litellm=load_litellm, kinds=KindRules.of(settings))
        closing.append(memory)
        services = Services(settings, memory, state, SystemClock())
        await services.pais.load()
        if group is not None:
            pai, chats = member_scope(settings, group, pais=services.pais)
            erasure = replace(erasure, pai=pai, chat_keys=chats)
        from bot.relay import Relay, RelayJobs

        services.erasers += [memory_eraser(memory), state, Relay(services, RelayJobs(state)), services.people]
        from bot.app.compose import App

        app = App(settings)  # its plugin wiring, nothing started
        app.services = services
        app.shared = SkillResources(settings.data_path, erasers=services.erasers)
        app._default_skills()  # the skills' stores register their erasers
        closing += app._background
        services.erasers += [a for a in app._build_adapters().values() if callable(getattr(a, "erase", None))]
        return await Forgetter(services.erasers).forget(erasure)
    finally:
        for part in reversed(closing):
            with contextlib.suppress(Exception):
                await _close(part)
        lock.release()


async def _close(part: Any) -> None:
    if isinstance(part, StateDB):
        part.close()
    elif callable(getattr(part, "close", None)) and asyncio.iscoroutinefunction(part.close):
        await part.close()
    elif callable(getattr(part, "stop", None)):
        await part.stop()
