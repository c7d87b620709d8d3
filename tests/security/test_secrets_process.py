"""Secrets at the process level: ``python -m bot run`` with its secrets in the environment, and an adapter
that fails to start with the token in its exception text (as URL-bearing HTTP errors do) and logs it too.
Nothing on stderr may show a secret; the operator still learns which adapter failed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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


def test_the_real_telegram_adapter_failing_to_connect_shows_no_token(tmp_path):
    """The same through ``python -m bot run`` and the real Telegram adapter, whose Bot API is unreachable."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG % (tmp_path / "data"))
    cfg.chmod(0o600)
    res = run(["-m", "bot", "run", "--config", str(cfg)], SECRETS)
    output = res.stdout + res.stderr
    assert res.returncode == 2 and "Telegram" in res.stderr, output
    assert [name for name, value in SECRETS.items() if value in output] == []
