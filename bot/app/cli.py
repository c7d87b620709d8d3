"""The ``paibot`` command line (part of the composition root).

    paibot run    [--config FILE]     start the bot
    paibot check  [--config FILE]     validate config.yaml and print the effective settings, secrets masked
    paibot memory ...                 import, search, stats, export, forget, reindex (docs/memory.md)
    paibot invite PLATFORM            print the URL that adds the bot to a server (e.g. discord)
    paibot usage  [--group KEY]       token and cost accounting per group and day
    paibot plugins [--json]           installed adapter, skill and tool plugins, and which are enabled
    paibot status  [--json]           the running bot's figures (its /metrics): messages, lanes, latency, ...

The config file is ``--config``, else ``$PAIBOT_CONFIG``, else ``./config.yaml``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import yaml

from bot import plugins as plugin_api
from bot.app.datadir import make_private
from bot.app.logsetup import RedactSecrets, setup_logging
from bot.config import Settings, default_config_path, load_settings, masked, secrets_of
from bot.errors import AdapterConfigError, ConfigError, DataDirLocked, PaibotError
from bot.plugins import PluginCatalog


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paibot", description="A self-hosted AI group member.")
    p.add_argument("--config", help="path to config.yaml (default: $PAIBOT_CONFIG or ./config.yaml)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("run", "start the bot"), ("check", "validate the config and print it, secrets masked")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    inv = sub.add_parser("invite", help="print the link that adds the bot to a platform")
    inv.add_argument("platform", help="an adapter plugin that has invite links (paibot plugins lists them)")
    inv.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    plu = sub.add_parser("plugins", help="list installed adapter, skill and tool plugins and which are enabled")
    plu.add_argument("--json", action="store_true", help="one JSON object per plugin")
    plu.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    sta = sub.add_parser("status", help="the running bot's figures: messages, lanes, answer latency, tokens")
    sta.add_argument("--json", action="store_true", help="every sample as one JSON object per line")
    sta.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    use = sub.add_parser("usage", help="token and cost accounting per group and day")
    use.add_argument("--group", default=None)
    use.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    try:
        from memory.cli import register
    except ImportError:  # pragma: no cover - the memory package is part of the distribution
        pass
    else:
        register(sub)
    return p


def _config_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "config_sub", None) or args.config


def _warn_permissions(path: Path, settings: Settings) -> None:
    """Warn when the config file holds a secret written into it and other users may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError:
        return
    inline = [s for s in secrets_of(settings) if s in text]
    if inline and mode & (stat.S_IRGRP | stat.S_IROTH):
        print(
            f"warning: {path} holds secrets and is readable by other users of this machine; "
            f"run: chmod 600 {path} (or move the secrets to environment variables)",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = _config_path(args)
    catalog = plugin_api.discover()
    try:
        settings = load_settings(cfg, plugins=catalog)
    except ConfigError as exc:
        print(f"paibot: {exc}", file=sys.stderr)
        return 2
    _warn_permissions(Path(cfg or os.environ.get("PAIBOT_CONFIG", "config.yaml")), settings)
    # Errors reach stderr past the logging filter: redact them the same way (an SDK's error text may carry
    # the token, e.g. in a request URL).
    redact = RedactSecrets(secrets_of(settings)).redact
    try:
        return _dispatch(args, settings, catalog)
    except (AdapterConfigError, DataDirLocked, ConfigError) as exc:
        print(redact(f"paibot: {exc}"), file=sys.stderr)
        return 2
    except PaibotError as exc:
        print(redact(f"paibot: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - the last error hook: a traceback, but never with a secret in it
        print(redact(traceback.format_exc()), file=sys.stderr)
        return 1


def _configured_timezone(args: argparse.Namespace) -> str:
    """``bot.timezone`` as written in the config file ("" when it leaves the choice to the host)."""
    try:
        raw = yaml.safe_load(Path(_config_path(args) or default_config_path()).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ""
    bot = raw.get("bot") if isinstance(raw, dict) else None
    return str(bot.get("timezone") or "") if isinstance(bot, dict) else ""


def _dispatch(args: argparse.Namespace, settings: Settings, catalog: PluginCatalog) -> int:
    if args.cmd == "check":
        print(yaml.safe_dump(masked(settings), sort_keys=False, allow_unicode=True), end="")
        if not _configured_timezone(args):
            print(f"time zone: {settings.bot.timezone} (the host's local zone; set bot.timezone to choose "
                  "another)", file=sys.stderr)
        print("config OK", file=sys.stderr)
        return 0
    if args.cmd == "run":
        quiet = [name for inst in catalog.adapters.values() for name in inst.plugin.quiet_loggers]
        setup_logging(settings.log_level, secrets_of(settings), quiet, settings.log_format)
        make_private(settings.data_path)
        from bot.app import App

        asyncio.run(App(settings, plugins=catalog).run_forever())
        return 0
    if args.cmd == "invite":
        return _invite(args.platform, settings, catalog)
    if args.cmd == "plugins":
        return _plugins(settings, catalog, as_json=args.json)
    if args.cmd == "usage":
        return _usage(settings, args.group)
    if args.cmd == "status":
        from bot.app.status import status

        return status(settings, as_json=args.json)
    if args.cmd == "memory":
        from bot.app.forget import forget_command
        from bot.providers.litellm_llm import load_litellm
        from memory.cli import run
        from memory.kinds import KindRules

        from bot.pais import WithChatPais, chat_made_scopes

        setup_logging("WARNING", secrets_of(settings))
        make_private(settings.data_path)
        # pais made from chat are memory scopes too (config.yaml's win, as in the bot)
        scoped = WithChatPais(settings, chat_made_scopes(settings.data_path / "paibot.db"))
        return run(args, scoped, load_litellm=load_litellm, kinds=KindRules.of(settings),  # type: ignore[arg-type]
                   forget=forget_command)
    raise AssertionError(args.cmd)


def _invite(platform: str, settings: Settings, catalog: PluginCatalog) -> int:
    inst = catalog.adapters.get(platform)
    if inst is None or inst.plugin.invite is None:
        able = sorted(n for n, i in catalog.adapters.items() if i.plugin.invite is not None)
        print(f"paibot: no invite link for {platform!r} (adapters with one: {', '.join(able) or 'none'})",
              file=sys.stderr)  # fmt: skip
        return 2
    print(inst.plugin.invite(settings.adapters[platform]))
    return 0


def _plugins(settings: Settings, catalog: PluginCatalog, *, as_json: bool) -> int:
    """Installed plugins by kind: name, whether config.yaml enables it, where it comes from, what it does."""
    rows = []
    for kind, inst in catalog.all():
        section = getattr(settings, kind).get(inst.plugin.name) or inst.plugin.settings()
        rows.append({
            "kind": kind, "name": inst.plugin.name, "enabled": bool(section.enabled),
            "distribution": inst.distribution, "version": inst.version, "description": inst.plugin.description,
        })  # fmt: skip
    problems = [{"kind": where.split(".")[0], "name": where.split(".", 1)[1], "problem": why}
                for where, why in sorted(catalog.problems.items())]  # fmt: skip
    if as_json:
        for row in [*rows, *problems]:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    for kind in ("adapters", "skills", "tools"):
        print(f"{kind}:")
        mine = [r for r in rows if r["kind"] == kind]
        for r in mine:
            state = "enabled " if r["enabled"] else "disabled"
            origin = f"{r['distribution']} {r['version']}".strip()
            print(f"  {r['name']:<12} {state}  {origin:<24} {r['description']}")
        if not mine:
            print("  (none installed)")
    for p in problems:
        print(f"broken: {p['kind']}.{p['name']}: {p['problem']}")
    return 0


def _usage(settings: Settings, group: str | None) -> int:
    from bot.state import StateDB

    db = settings.data_path / "paibot.db"
    if not db.exists():
        print("no usage recorded yet")
        return 0
    state = StateDB(db)
    try:
        for row in asyncio.run(state.usage_report(group)):
            print(json.dumps(row, ensure_ascii=False))
    finally:
        state.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
