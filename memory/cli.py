"""``paibot memory ...``: import, search, stats, export, forget, reindex.

``register(subparsers)`` adds the ``memory`` command to the ``paibot`` parser; ``run(args, settings)``
executes it and returns the exit code (0 ok, 1 failed, 2 the data directory is in use). The composition root
(``bot.app.cli``) loads the settings and calls them; without the ``paibot`` script the same commands run as
``python -m bot [--config FILE] memory ...``.

The CLI takes the data-directory lock like the bot does: with the embedded backend two processes must not
write one chroma directory, so stop the bot (or point ``--config`` at another data_dir) first.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from bot.errors import ConfigError, DataDirLocked, MemoryError_
from bot.ports import BOT, MemoryHit, MemoryRecord
from memory import chat_exports
from memory.config import LitellmLoader, MemoryConfig
from memory.importers import (
    FORMATS,
    ImportProblem,
    ImportTarget,
    Parsed,
    Skipped,
    count_items,
    detect_format,
    read_records,
)
from memory.kinds import KindRules
from memory.lock import acquire_data_dir_lock
from memory.store import HybridMemoryStore, ImportResult, open_memory


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``memory`` and its subcommands to an argparse subparsers object."""
    mem = subparsers.add_parser("memory", help="import, search, export and maintain the group memory")
    mem.add_argument("--config", dest="config_sub", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = mem.add_subparsers(dest="memory_cmd", required=True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", dest="config_sub", default=argparse.SUPPRESS, help="path to config.yaml")
        return p

    p = cmd("import", "import a chat history into a group's memory (idempotent)")
    p.add_argument("file", type=Path)
    p.add_argument("--group", required=True, help='group key, e.g. "telegram:-100123"')
    p.add_argument("--format", choices=(*FORMATS, *chat_exports.FORMATS, "auto"), default="auto")
    p.add_argument("--tz", help="the zone of times written without one: a UTC offset like +08:00 or a "
                   f"name like Europe/Berlin (qq and wechat exports: default {chat_exports.DEFAULT_TZ})")
    p.add_argument("--chat", help="the chat to take from a whole-account Telegram export (its name or id)")
    p.add_argument("--bot-id", dest="bot_ids", action="append", default=[],
                   help="the bot's own account id in the export (e.g. its QQ number; repeatable): its messages "
                   "are recorded as the bot's, never as evidence")
    p = cmd("search", "search a group's memory")
    p.add_argument("query", nargs="?")
    p.add_argument("--group", required=True)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    p.add_argument("--queries", type=Path, help="a file of queries, one per line; prints one JSON line each")
    p = cmd("stats", "records, vectors and size per memory")
    p.add_argument("--json", action="store_true")
    p = cmd("export", "print a group's memory as JSONL (the import format)")
    p.add_argument("--group", required=True)
    p = cmd("forget", "forget a member (or messages) in a group: memory, inbox, files, reminders, to-dos, polls")
    p.add_argument("--group", required=True)
    p.add_argument("--author", help="the member's id")
    p.add_argument("--id", dest="ids", action="append", default=[], help="a message id (repeatable)")
    cmd("reindex", "rebuild the word and vector indexes from the transcript")
    return mem


ForgetCommand = Callable[[argparse.Namespace, Any], int]


def run(
    args: argparse.Namespace, settings: MemoryConfig, *, load_litellm: LitellmLoader | None = None,
    kinds: KindRules | None = None, forget: ForgetCommand | None = None,
) -> int:
    """Run one ``memory`` subcommand; returns the process exit code (``load_litellm``: as ``open_memory``).
    ``forget`` runs ``memory forget``: forgetting reaches stores beyond the memory (the inbox, the skills',
    the web group's), so the composition root provides it (``bot.app.forget.forget_command``)."""
    if args.memory_cmd == "forget":
        if forget is None:
            print("paibot memory forget: run it as `paibot memory forget` (it forgets in every store)",
                  file=sys.stderr)
            return 1
        return forget(args, settings)
    try:
        lock = acquire_data_dir_lock(settings.data_path)
    except DataDirLocked as exc:
        print(f"paibot memory: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings, load_litellm, kinds))
    except (MemoryError_, ConfigError) as exc:
        print(f"paibot memory: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `paibot memory export | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    finally:
        lock.release()


async def _run(args: argparse.Namespace, settings: MemoryConfig, load_litellm: LitellmLoader | None,
               kinds: KindRules | None) -> int:  # fmt: skip
    store = await open_memory(settings, load_litellm=load_litellm, kinds=kinds)
    try:
        handler = {
            "import": _import, "search": _search, "stats": _stats, "export": _export, "reindex": _reindex,
        }[args.memory_cmd]  # fmt: skip
        return await handler(store, args, settings)
    finally:
        await store.close()


# ---------------------------------------------------------------------- subcommands


class _Progress:
    """Progress on stderr: a redrawn bar on a terminal, one line per committed batch otherwise. Every
    figure printed has been committed to disk."""

    def __init__(self, total: int | None, out: TextIO) -> None:
        self.total, self.out, self.tty = total, out, out.isatty()

    def __call__(self, seen: int, added: int) -> None:
        if self.tty and self.total:
            width = 30
            done = int(width * min(seen, self.total) / self.total)
            bar = "#" * done + "-" * (width - done)
            self.out.write(f"\r[{bar}] {seen}/{self.total} read, {added} new")
        else:
            self.out.write(f"imported: {seen} read, {added} new\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")


async def _import(store: HybridMemoryStore, args: argparse.Namespace, settings: MemoryConfig) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"paibot memory import: no such file: {path}", file=sys.stderr)
        return 1
    fmt, data = (chat_exports.guess(path), None) if args.format == "auto" else (args.format, None)
    if fmt is None:
        fmt, data = detect_format(path)
    pai = settings.pai_of(args.group)
    zone = chat_exports.parse_tz(args.tz) if args.tz else None  # a bad --tz fails before anything is read
    if fmt in chat_exports.FORMATS:
        print(f"paibot memory import: reading the export's times as {chat_exports.describe_tz(args.tz)}"
              + ("" if args.tz else " (the default; pass --tz to change it)"), file=sys.stderr)
        items: Iterator[Parsed] = chat_exports.read(path, fmt, args.group, pai, args.tz)
    else:
        items = read_records(path, fmt, ImportTarget(args.group, pai, zone, args.chat), data)
    problems: list[ImportProblem] = []
    skipped: Counter[str] = Counter()

    def records(items: Iterator[Parsed]) -> Iterator[MemoryRecord]:
        for item in items:
            if isinstance(item, ImportProblem):
                problems.append(item)
                print(f"paibot memory import: {path}: {item.where}: {item.reason} (skipped)", file=sys.stderr)
            elif isinstance(item, Skipped):
                skipped[item.why] += 1
            elif item.author_id in bot_ids and not item.is_bot:
                yield dataclasses.replace(item, is_bot=True, kind=BOT)
            else:
                yield item

    bot_ids = set(getattr(args, "bot_ids", ()))
    progress = _Progress(count_items(path, fmt), sys.stderr)
    result = await store.import_records(records(items), progress=progress)
    progress.end()
    print("indexing...", file=sys.stderr)
    await store.flush()
    print(import_summary(args.group, fmt, result, skipped, len(problems)), file=sys.stderr)
    return 0


def import_summary(group: str, fmt: str, result: ImportResult, skipped: Counter[str], malformed: int) -> str:
    unchanged = result.seen - result.added - result.updated
    line = (f"imported into {group} ({fmt}): {result.added} new, {result.updated} updated, {unchanged} unchanged "
            f"or refused (of {result.seen} records)")  # fmt: skip
    left = [f"{skipped[k]} {k}" for k in ("empty", "service") if skipped[k]]
    unknown = sorted((k.removeprefix("kind "), n) for k, n in skipped.items() if k.startswith("kind "))
    if unknown:
        left.append(f"{sum(n for _, n in unknown)} of kinds this importer does not know "
                    f"({', '.join(f'{k}: {n}' for k, n in unknown)})")  # fmt: skip
    if left:
        line += f"; left out: {', '.join(left)}"
    return line + f"; {malformed} malformed"


def hit_json(h: MemoryHit) -> dict[str, Any]:
    r = h.record
    return {"id": r.id, "author": r.author_name, "author_id": r.author_id, "time": r.sent_at.isoformat(),
            "text": r.text, "score": h.score}  # fmt: skip


async def _search(store: HybridMemoryStore, args: argparse.Namespace, settings: MemoryConfig) -> int:
    pai = settings.pai_of(args.group)
    if (args.query is None) == (args.queries is None):
        print("paibot memory search: give a QUERY or --queries FILE (not both)", file=sys.stderr)
        return 1
    if args.queries is not None:
        for line in args.queries.read_text(encoding="utf-8").splitlines():
            hits = await store.search(pai, line, args.limit) if line.strip() else []
            print(json.dumps([hit_json(h) for h in hits], ensure_ascii=False))
        return 0
    hits = await store.search(pai, args.query, args.limit)
    if args.json:
        print(json.dumps([hit_json(h) for h in hits], ensure_ascii=False))
        return 0
    for h in hits:
        r = h.record
        print(f"{h.score:.4f}  {r.sent_at:%Y-%m-%d %H:%M}  {r.author_name}: {r.text}  [{r.id}]")
    if not hits:
        print("no matches", file=sys.stderr)
    return 0


async def _stats(store: HybridMemoryStore, args: argparse.Namespace, settings: MemoryConfig) -> int:
    stats = await store.stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
        return 0
    print(f"embedding: {stats['embedding']}   data directory: {_size(stats['data_dir_bytes'])}")
    print(f"{'memory':<32} {'records':>8} {'vectors':>8} {'pending':>8} {'authors':>8}  last message")
    for p in stats["pais"]:
        print(f"{p['pai']:<32} {p['records']:>8} {p['vectors']:>8} {p['pending_index']:>8} {p['authors']:>8}  "
              f"{p['last']}")  # fmt: skip
    return 0


async def _export(store: HybridMemoryStore, args: argparse.Namespace, settings: MemoryConfig) -> int:
    for r in await store.export(settings.pai_of(args.group)):
        row = {"id": r.id, "author": r.author_name, "author_id": r.author_id, "text": r.text,
               "sent_at": r.sent_at.isoformat(), "kind": r.kind, "chat": r.chat_key,
               "is_bot": r.is_bot}  # fmt: skip
        if r.reply_to_id:
            row["reply_to"] = r.reply_to_id
        print(json.dumps(row, ensure_ascii=False))
    return 0


async def _reindex(store: HybridMemoryStore, args: argparse.Namespace, settings: MemoryConfig) -> int:
    n = await store.reindex()
    print(f"re-indexed {n} records")
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
