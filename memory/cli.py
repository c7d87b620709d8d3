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
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from bot.errors import ConfigError, DataDirLocked, MemoryError_
from bot.ports import MemoryHit, MemoryRecord
from memory import chat_exports
from memory.config import LitellmLoader, MemoryConfig
from memory.importers import FORMATS, ImportProblem, Parsed, count_items, guess_format, read_records
from memory.lock import acquire_data_dir_lock
from memory.store import HybridMemoryStore, open_memory


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
    p.add_argument("--tz", default=None, help=f"qq and wechat exports: the zone of their times "
                   f"(default {chat_exports.DEFAULT_TZ}; a UTC offset or a name like Asia/Shanghai)")
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
    p = cmd("forget", "remove a member's messages (or given message ids) from a group's memory")
    p.add_argument("--group", required=True)
    p.add_argument("--author", help="the member's id")
    p.add_argument("--id", dest="ids", action="append", default=[], help="a message id (repeatable)")
    cmd("reindex", "rebuild every vector index from the transcript")
    return mem


def run(
    args: argparse.Namespace, settings: MemoryConfig, *, load_litellm: LitellmLoader | None = None
) -> int:
    """Run one ``memory`` subcommand; returns the process exit code (``load_litellm``: as ``open_memory``)."""
    try:
        lock = acquire_data_dir_lock(settings.data_path)
    except DataDirLocked as exc:
        print(f"paibot memory: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings, load_litellm))
    except (MemoryError_, ConfigError) as exc:
        print(f"paibot memory: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()


async def _run(args: argparse.Namespace, settings: MemoryConfig, load_litellm: LitellmLoader | None) -> int:
    store = await open_memory(settings, load_litellm=load_litellm)
    try:
        handler = {
            "import": _import, "search": _search, "stats": _stats, "export": _export, "forget": _forget,
            "reindex": _reindex,
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
    fmt = (chat_exports.guess(path) or guess_format(path)) if args.format == "auto" else args.format
    pai = settings.pai_of(args.group)
    tz = getattr(args, "tz", None)
    if fmt in chat_exports.FORMATS:
        chat_exports.parse_tz(tz)  # a bad --tz fails before anything is read
        print(f"paibot memory import: reading the export's times as {chat_exports.describe_tz(tz)}"
              + ("" if tz else " (the default; pass --tz to change it)"), file=sys.stderr)
        items: Iterator[Parsed] = chat_exports.read(path, fmt, args.group, pai, tz)
    else:
        if tz:
            print("paibot memory import: --tz applies to qq and wechat exports only", file=sys.stderr)
            return 1
        items = read_records(path, fmt, args.group, pai)
    problems: list[ImportProblem] = []

    def records(items: Iterator[Parsed]) -> Iterator[MemoryRecord]:
        for item in items:
            if isinstance(item, ImportProblem):
                problems.append(item)
                print(f"paibot memory import: {path}: {item.where}: {item.reason} (skipped)", file=sys.stderr)
            else:
                yield item

    progress = _Progress(count_items(path, fmt), sys.stderr)
    result = await store.import_records(records(items), progress=progress)
    progress.end()
    print("indexing...", file=sys.stderr)
    await store.flush()
    print(
        f"imported {result.added} new of {result.seen} messages into {args.group} ({fmt});"
        f" {len(problems)} malformed skipped",
        file=sys.stderr,
    )
    return 0


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
               "sent_at": r.sent_at.isoformat(), "kind": r.kind, "chat": r.chat_key}  # fmt: skip
        if r.reply_to_id:
            row["reply_to"] = r.reply_to_id
        print(json.dumps(row, ensure_ascii=False))
    return 0


async def _forget(store: HybridMemoryStore, args: argparse.Namespace, settings: MemoryConfig) -> int:
    if not args.author and not args.ids:
        print("paibot memory forget: give --author ID and/or --id MESSAGE_ID", file=sys.stderr)
        return 1
    n = await store.forget(settings.pai_of(args.group), author_id=args.author, ids=args.ids)
    print(f"forgot {n} records")
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
