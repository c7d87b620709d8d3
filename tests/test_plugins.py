"""Plugin discovery and the sections plugins own: what a broken or misnamed plugin does, how sections read,
and how group-dependent tool sources join the skills' tools."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.commands import CommandRegistry
from bot.config import parse_settings
from bot.errors import ConfigError
from bot.plugins import discover
from bot.ports import Tool, ToolSpec


def distribution(site: Path, name: str, entry_points: str, module: str, source: str) -> None:
    """A minimal installed distribution: a module and a dist-info whose entry points name it."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_that_fails_to_load_is_reported_and_the_others_still_load(site: Path) -> None:
    distribution(
        site,
        "paibot-broken",
        """
        [paibot.adapters]
        broken = broken_adapter:plugin
    """,
        "broken_adapter",
        "raise ImportError('the SDK is missing')\n",
    )
    found = discover()
    assert "broken" not in found.adapters and "web" in found.adapters
    assert "the SDK is missing" in found.problems["adapters.broken"]
    parse_settings("", env={}, plugins=found)  # not configured: not an error
    with pytest.raises(ConfigError) as err:
        parse_settings("adapters:\n  broken: {enabled: true}\n", env={}, plugins=found)
    assert err.value.path == "adapters.broken" and "could not be loaded" in str(err.value)


def test_a_package_installed_after_a_discovery_is_found_by_the_next_one(site: Path) -> None:
    assert "latecomer" not in discover().skills  # the catalog is kept between calls ...
    distribution(
        site,
        "paibot-latecomer",
        "[paibot.skills]\nlatecomer = latecomer_plugin:plugin\n",
        "latecomer_plugin",
        """
        from bot.plugins import SkillPlugin, SkillSet
        plugin = SkillPlugin(name="latecomer", build=lambda env: SkillSet())
    """,
    )
    found = discover()  # ... until a package is installed where Python imports from
    assert found.skills["latecomer"].distribution == "paibot-latecomer"
    assert discover() is found


def test_an_entry_point_must_name_a_plugin_of_its_kind_under_its_own_name(site: Path) -> None:
    distribution(
        site,
        "paibot-odd",
        """
        [paibot.skills]
        wrongtype = odd_plugins:not_a_plugin
        alias = odd_plugins:plugin
    """,
        "odd_plugins",
        """
        from bot.plugins import SkillPlugin, SkillSet
        not_a_plugin = object()
        plugin = SkillPlugin(name="realname", build=lambda env: SkillSet())
    """,
    )
    found = discover()
    assert "SkillPlugin" in found.problems["skills.wrongtype"]
    assert "realname" in found.problems["skills.alias"]


def test_sections_read_as_a_mapping_and_as_attributes() -> None:
    s = parse_settings("adapters:\n  web: {port: 9000}\n", env={})
    assert s.adapters["web"].port == 9000 == s.adapters.web.port
    assert "web" in s.adapters.enabled() and "telegram" not in s.adapters.enabled()
    assert s.skills.summary.enabled  # built-in skills are on unless their section says otherwise
    assert not parse_settings("skills:\n  summary: {enabled: false}\n", env={}).skills.summary.enabled
    with pytest.raises(AttributeError):
        _ = s.adapters.nowhere


def tool(name: str, description: str = "") -> Tool:
    async def run(args: dict[str, Any], ctx: Any) -> str:
        return name

    return Tool(ToolSpec(name, description or name, {"type": "object"}), run)


class PerGroup:
    def __init__(self, tools: dict[str, Sequence[Tool]]) -> None:
        self._tools = tools

    def tools_for(self, group_key: str) -> Sequence[Tool]:
        return self._tools.get(group_key, ())


class Broken:
    def tools_for(self, group_key: str) -> Sequence[Tool]:
        raise RuntimeError("boom")


def test_tool_sources_add_their_tools_per_group_after_the_skills_tools() -> None:
    registry = CommandRegistry()
    registry.add_tool(tool("search"))
    registry.add_tool_source(Broken())
    registry.add_tool_source(PerGroup({"web:1": [tool("weather"), tool("search", "from outside")]}))
    assert [t.spec.name for t in registry.tools_for("web:1")] == ["search", "weather"]
    assert [t.spec.name for t in registry.tools_for("web:2")] == ["search"]
    assert registry.tools_for("web:1")[0].spec.description == "search"  # the skill's tool keeps the name


def test_paibot_invite_asks_the_adapter_plugin_for_its_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.app.cli import main

    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"bot: {{data_dir: '{tmp_path}'}}\nadapters:\n  web: {{enabled: false}}\n"
        "  discord: {enabled: true, token: t0k3n, application_id: '123456789012345678'}\n"
    )
    cfg.chmod(0o600)
    assert main(["invite", "discord", "--config", str(cfg)]) == 0
    assert "client_id=123456789012345678" in capsys.readouterr().out
    assert main(["invite", "web", "--config", str(cfg)]) == 2
    assert "adapters with one: discord" in capsys.readouterr().err
