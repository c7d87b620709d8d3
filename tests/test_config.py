"""config.yaml: validated, frozen settings; every error names its key path."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from bot.config import load_settings, masked, parse_settings
from bot.plugins import discover
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, env=env or {})
    return info.value


def test_the_shipped_config_is_valid_with_an_empty_environment():
    s = load_settings(ROOT / "config.yaml", env={})
    assert s.bot.name == "Pai" and s.adapters.web.enabled and not s.llm.model
    assert s.adapters.web.host == "127.0.0.1" and s.adapters.web.port == 8765


def test_settings_are_frozen():
    s = parse_settings("", env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.bot.name = "x"  # type: ignore[misc]


def test_unknown_key_names_its_path():
    e = error_of("adapters:\n  telegram:\n    tokn: abc\n")
    assert e.path == "adapters.telegram.tokn" and "unknown key" in str(e)


def test_wrong_type_names_its_path():
    assert error_of("adapters: {web: {port: eighty}}").path == "adapters.web.port"
    assert error_of("triggers: {mention: maybe}").path == "triggers.mention"
    assert error_of("access: {allowed_groups: {a: 1}}").path == "access.allowed_groups"


def test_missing_secret_of_an_enabled_adapter_names_key_and_variable():
    e = error_of("adapters: {telegram: {enabled: true, token: '${TG_TOKEN}'}}")
    assert e.path == "adapters.telegram.token" and "TG_TOKEN" in str(e)


def test_missing_secret_of_a_disabled_adapter_is_fine():
    s = parse_settings("adapters: {telegram: {enabled: false, token: '${TG_TOKEN}'}}", env={})
    assert s.adapters.telegram.token == ""


def test_environment_interpolation_with_defaults():
    s = parse_settings(
        "llm: {model: '${M:-openai/x}', api_key: '${KEY}'}\nbot: {name: '${NAME:-Pai}'}",
        env={"KEY": "sk-1", "NAME": "Bo"},
    )
    assert (s.llm.model, s.llm.api_key, s.bot.name) == ("openai/x", "sk-1", "Bo")


def test_llm_key_is_required_only_when_a_model_is_set():
    parse_settings("llm: {api_key: '${KEY}'}", env={})
    assert error_of("llm: {model: openai/x, api_key: '${KEY}'}").path == "llm.api_key"


def test_web_group_refuses_a_public_bind_without_a_token():
    assert error_of("adapters: {web: {host: 0.0.0.0}}").path == "adapters.web.access_token"
    parse_settings("adapters: {web: {host: 0.0.0.0, access_token: t0k3n}}", env={})


def test_web_group_limits_name_their_path():
    s = parse_settings("adapters: {web: {posts_per_s: 3, storage_mb: 0}}", env={})
    assert s.adapters.web.posts_per_s == 3.0 and s.adapters.web.storage_mb == 0
    e = error_of("adapters: {web: {sockets_per_client: -1}}")
    assert e.path == "adapters.web.sockets_per_client" and "negative" in str(e)
    assert error_of("adapters: {web: {posts_per_s: fast}}").path == "adapters.web.posts_per_s"
    assert error_of("adapters: {web: {sockets_per_ip: 3}}").path == "adapters.web.sockets_per_ip"


def test_bad_timezone_and_group_key():
    assert error_of("bot: {timezone: Mars/Olympus}").path == "bot.timezone"
    assert "group keys" in str(error_of("groups: {nokey: {}}"))


def test_group_overrides_and_pais():
    s = parse_settings(
        'groups: {"telegram:-1001": {timezone: Asia/Shanghai, keywords: [派派]}}\n'
        'pais: {team: ["telegram:-1001", "discord:9"]}',
        env={},
    )
    assert s.group("telegram:-1001").timezone == "Asia/Shanghai"
    assert s.group("web:1").timezone is None
    assert s.pai_of("discord:9") == s.pai_of("telegram:-1001") == "pai:team"
    assert s.pai_of("web:1") == "web:1"


def test_invalid_yaml_reports_the_line():
    e = error_of("bot:\n  name: [unclosed\n")
    assert "line" in str(e)


def test_masked_hides_secrets():
    s = parse_settings("llm: {model: m, api_key: sk-very-secret}", env={})
    assert "sk-very-secret" not in repr(masked(s)) and masked(s)["llm"]["api_key"] == "***"


@hsettings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["bot", "llm", "adapters", "web", "name", "port", "enabled", "x", "groups", "memory"]),
        inner, max_size=4),
    max_leaves=12,
))
def test_fuzzed_config_never_crashes_with_anything_but_a_config_error(doc):
    import yaml

    try:
        parse_settings(yaml.safe_dump(doc), env={})
    except ConfigError:
        pass


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_cli_check_prints_masked_settings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm: {model: openai/x, api_key: '${K}'}\n")
    res = run_cli("check", "--config", str(cfg), cwd=tmp_path, env={"K": "sk-topsecret"})
    assert res.returncode == 0, res.stderr
    assert "sk-topsecret" not in res.stdout and "api_key: '***'" in res.stdout


def test_cli_check_names_the_bad_key_and_fails(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bot: {nmae: X}\n")
    res = run_cli("check", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 2 and "bot.nmae" in res.stderr


def test_cli_warns_when_a_world_readable_config_holds_a_secret(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm: {model: m, api_key: sk-inline-secret}\n")
    cfg.chmod(0o644)
    res = run_cli("check", "--config", str(cfg), cwd=tmp_path)
    assert "chmod 600" in res.stderr and "sk-inline-secret" not in res.stderr
    cfg.chmod(0o600)
    assert "chmod 600" not in run_cli("check", "--config", str(cfg), cwd=tmp_path).stderr


def test_cli_missing_config_file_is_explained(tmp_path):
    res = run_cli("run", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert res.returncode == 2 and "no config file" in res.stderr


def test_admins_must_be_platform_ids_and_never_ids_a_platform_cannot_vouch_for():
    assert "platform" in str(error_of('bot: {admins: ["alice"]}'))
    # Web ids are proven by member keys now: an operator may name a web member.
    assert parse_settings('bot: {admins: ["web:m-abc"]}', env={}).bot.admins == ("web:m-abc",)
    catalog = discover()
    web = catalog.adapters["web"]
    unverified = dataclasses.replace(web, plugin=dataclasses.replace(web.plugin, verified_identities=False))
    loose = dataclasses.replace(catalog, adapters={**catalog.adapters, "web": unverified})
    with pytest.raises(ConfigError) as info:
        parse_settings('groups: {"telegram:-1": {admins: ["telegram:1", "web:x"]}}', env={}, plugins=loose)
    assert info.value.path == 'groups."telegram:-1".admins[1]' and "not authenticated" in str(info.value)


def test_memory_embedding_choices():
    for emb in ("offline", "chroma-default", "litellm:ollama/nomic-embed-text",
                "sentence-transformers:all-MiniLM-L6-v2", "sentence-transformers:/models/minilm"):  # fmt: skip
        assert parse_settings(f"memory: {{embedding: '{emb}'}}", env={}).memory.embedding == emb
    err = error_of("memory: {embedding: minilm}")
    assert err.path == "memory.embedding" and "sentence-transformers:" in str(err)


def test_the_scheduling_cap_and_its_quiet_reserve_are_checked():
    assert error_of("limits: {concurrent_groups: 0}\n").path == "limits.concurrent_groups"
    assert error_of("limits: {concurrent_groups: 8, quiet_group_slots: 8}\n").path == "limits.quiet_group_slots"
    assert parse_settings("limits: {concurrent_groups: 8, quiet_group_slots: 2}\n").limits.quiet_group_slots == 2
