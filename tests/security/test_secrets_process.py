"""Secrets at the process level: ``python -m bot run`` with its secrets in the environment, and an adapter
that fails to start with the token in its exception text (as URL-bearing HTTP errors do) and logs it too.
Nothing on stderr may show a secret; the operator still learns which adapter failed, and why.

The real Telegram adapter is run twice: with its Bot API unreachable (it keeps connecting in the background
and says so, naming the URL) and with its token rejected (it stops with the instruction; exit 2)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fake_telegram import FakeTelegram

SECRETS = {
    "TG_TOKEN": "424242:AAH-process-SECRET-token",
    "LLM_KEY": "sk-process-SECRET-llm",
    "DC_TOKEN": "dc-process-SECRET-token",
}
CONFIG = """\
bot: {data_dir: "%s"}
log_level: DEBUG
llm: {api_key: "${LLM_KEY}"}
adapters:
  web: {enabled: false}
  telegram: {enabled: true, token: "${TG_TOKEN}", base_url: "http://127.0.0.1:9/bot"}
  discord: {token: "${DC_TOKEN}"}
"""
# A stand-in for any adapter (built-in or third-party) whose SDK puts the token into its errors and logs.
LEAKY_RUN = textwrap.dedent("""
    import dataclasses, logging, sys
    from bot import plugins
    from bot.app.cli import main

    class LeakyAdapter:
        name = "telegram"

        def __init__(self, cfg, env):
            self.token = cfg.token

        async def start(self, sink):
            log = logging.getLogger("paibot.adapters.leaky")
            log.debug("connecting with token %s", self.token)
            try:
                raise ConnectionError(f"GET https://api.telegram.org/bot{self.token}/getMe failed")
            except ConnectionError:
                log.exception("could not connect with %s", self.token)
                raise

        async def stop(self):
            pass

    installed = plugins.discover

    def with_a_leaky_telegram():
        found = installed()
        leaky = dataclasses.replace(found.adapters["telegram"].plugin, create=LeakyAdapter)
        return dataclasses.replace(found, adapters={**found.adapters, "telegram": plugins.Installed(leaky)})

    plugins.discover = with_a_leaky_telegram
    sys.exit(main(["run", "--config", sys.argv[1]]))
""")



def run(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_failing_adapter_never_shows_the_token_on_stderr(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG % (tmp_path / "data"))
    cfg.chmod(0o600)
    res = run(["-c", LEAKY_RUN, str(cfg)], SECRETS)
    output = res.stdout + res.stderr
    leaked = [name for name, value in SECRETS.items() if value in output]
    print(f"process stderr: {len(leaked)} of {len(SECRETS)} secrets shown in {len(output.splitlines())} lines "
          f"(exit {res.returncode})")
    assert res.returncode == 2, output
    assert "telegram adapter could not start" in res.stderr and "***" in res.stderr
    assert leaked == [], output


async def run_until(args: list[str], env_extra: dict[str, str], seen: str | None, log: Path,
                    timeout: float = 90.0) -> tuple[int, str]:
    """Run the bot until a line containing ``seen`` shows in its output, then SIGTERM it; with ``seen=None``
    until it exits by itself. Returns the exit code and the whole output. (A plain ``Popen`` watched by
    polling: asyncio's child watcher can report a child that exits at once as "unknown", exit code 255.)"""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **env_extra, "PYTHONPATH": root, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:  # noqa: ASYNC230 - a local file, instant
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        async def until_seen_or_exited() -> None:
            while proc.poll() is None and (seen is None or seen not in log.read_text(errors="replace")):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(until_seen_or_exited(), timeout)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, log.read_text(errors="replace")


async def test_the_real_telegram_adapter_unable_to_connect_says_where_and_shows_no_token(tmp_path):
    """Nothing listens at the Bot API address: the adapter keeps trying in the background, with one clear
    line naming the URL and the next try; stopped with SIGTERM, the bot exits cleanly."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG % (tmp_path / "data"))
    cfg.chmod(0o600)
    code, output = await run_until(["-m", "bot", "run", "--config", str(cfg)], SECRETS,
                                   seen="cannot reach the Telegram Bot API at http://127.0.0.1:9",
                                   log=tmp_path / "bot.log")
    (line,) = [x for x in output.splitlines() if "cannot reach the Telegram Bot API" in x and "WARNING" in x]
    assert "next try in" in line, output
    assert code == 0, output
    assert [name for name, value in SECRETS.items() if value in output] == []


async def test_the_real_telegram_adapter_with_a_rejected_token_stops_with_the_instruction(tmp_path):
    fake = await FakeTelegram(token="111:the-token-telegram-knows").start()
    try:
        cfg = tmp_path / "config.yaml"
        cfg.write_text((CONFIG % (tmp_path / "data")).replace("http://127.0.0.1:9/bot", fake.base_url))
        cfg.chmod(0o600)
        code, output = await run_until(["-m", "bot", "run", "--config", str(cfg)], SECRETS, seen=None,
                                       log=tmp_path / "bot.log")
    finally:
        await fake.close()
    assert code == 2, output
    assert "rejected the bot token in adapters.telegram.token" in output and "@BotFather" in output, output
    assert [name for name, value in SECRETS.items() if value in output] == []
