"""The ``paibot`` command line (part of the composition root).

    paibot run    [--config FILE]     start the bot
    paibot check  [--config FILE]     validate config.yaml and print the effective settings, secrets masked
    paibot memory ...                 import, search, stats, export, forget, reindex (see README)
    paibot invite discord             print the URL that adds the bot to a Discord server
    paibot usage  [--group KEY]       token and cost accounting per group and day

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

from bot.app.datadir import make_private
from bot.config import Settings, load_settings, masked, secrets_of
from bot.errors import AdapterConfigError, ConfigError, DataDirLocked, PaibotError
from bot.logsetup import RedactSecrets, setup_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paibot", description="A self-hosted AI group member.")
    p.add_argument("--config", help="path to config.yaml (default: $PAIBOT_CONFIG or ./config.yaml)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("run", "start the bot"), ("check", "validate the config and print it, secrets masked")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    inv = sub.add_parser("invite", help="print the link that adds the bot to a platform")
    inv.add_argument("platform", choices=["discord"])
    inv.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
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
    try:
        settings = load_settings(cfg)
    except ConfigError as exc:
        print(f"paibot: {exc}", file=sys.stderr)
        return 2
    _warn_permissions(Path(cfg or os.environ.get("PAIBOT_CONFIG", "config.yaml")), settings)
    # Errors reach stderr past the logging filter: redact them the same way (an SDK's error text may carry
    # the token, e.g. in a request URL).
    redact = RedactSecrets(secrets_of(settings)).redact
    try:
        return _dispatch(args, settings)
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


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.cmd == "check":
        print(yaml.safe_dump(masked(settings), sort_keys=False, allow_unicode=True), end="")
        print("config OK", file=sys.stderr)
        return 0
    if args.cmd == "run":
        setup_logging(settings.log_level, secrets_of(settings))
        make_private(settings.data_path)
        from bot.app import App

        asyncio.run(App(settings).run_forever())
        return 0
    if args.cmd == "invite":
        from adapters.discord.adapter import invite_url

        print(invite_url(settings))
        return 0
    if args.cmd == "usage":
        return _usage(settings, args.group)
    if args.cmd == "memory":
        from bot.app.forget import forget_command
        from bot.providers.litellm_llm import load_litellm
        from memory.cli import run

        setup_logging("WARNING", secrets_of(settings))
        make_private(settings.data_path)
        return run(args, settings, load_litellm=load_litellm, forget=forget_command)
    raise AssertionError(args.cmd)


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
