"""House rule: the core imports no platform SDK, no adapter, no memory implementation, no litellm or
chromadb, except in the composition root and in the provider modules only the composition root imports."""

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parents[1] / "bot"
COMPOSITION_ROOT = {"app.py", "cli.py"}
PROVIDERS = {"llm_litellm.py": "bot.llm_litellm", "image_gen_litellm.py": "bot.skills.image_gen_litellm"}
FORBIDDEN = ("adapters", "memory", "telegram", "discord", "nio", "litellm", "chromadb")


def imported_modules(path: Path, top_only: bool = True) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] if top_only else a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0] if top_only else node.module)
    return names


def test_core_imports_no_platform_sdk_memory_or_llm_library():
    offenders = {}
    for path in BOT.rglob("*.py"):
        if path.name in COMPOSITION_ROOT or path.name in PROVIDERS:
            continue
        bad = imported_modules(path) & set(FORBIDDEN)
        if bad:
            offenders[str(path.relative_to(BOT))] = sorted(bad)
    assert offenders == {}


def test_only_the_composition_root_imports_the_provider_modules():
    users = {}
    for path in BOT.rglob("*.py"):
        if path.name in COMPOSITION_ROOT or path.name in PROVIDERS:
            continue
        used = imported_modules(path, top_only=False) & set(PROVIDERS.values())
        if used:
            users[str(path.relative_to(BOT))] = sorted(used)
    assert users == {}
