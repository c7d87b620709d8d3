"""House rule: imports go one way.

    adapters/<platform>/ ──▶ bot contracts ◀── memory/
                                 ▲
    bot/ core ───────────────────┘   (names no platform; imports no adapter, memory, SDK or provider)
    bot/app/ (composition root) ──▶ everything; the only importer of bot/providers/

- The core (``bot/`` without ``bot/app/`` and ``bot/providers/``) imports no adapter, no memory
  implementation, no platform SDK, no litellm or chromadb, and not the composition root or the providers.
- The core and the composition root name no platform: adapters are plugins found through entry points.
- Adapters import from ``bot`` only the contracts (events, ports, errors) and the plugin API; the memory
  only the contracts.
- A platform SDK is imported only by its own adapter package; an adapter imports no other adapter.
- Only the composition root imports the providers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "bot"
# bot.i18n belongs here: the translation catalogs every sentence a member reads comes from, adapters' pages
# included; it holds no core state and imports nothing from bot (a test below checks that).
CONTRACTS = {"bot.events", "bot.ports", "bot.errors", "bot.i18n"}
PLUGIN_API = {"bot.plugins"}
PLATFORM_SDKS = {"telegram": "telegram", "discord": "discord", "nio": "matrix"}
LIBRARIES_OUTSIDE_THE_CORE = ("litellm", "chromadb")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names, relative ones resolved, imports inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            names.add(base)
            # "from bot import ports" imports the module bot.ports
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


COMPOSITION_ROOT = ("bot.app", "bot.__main__")


def in_composition_root(name: str) -> bool:
    return any(within(name, root) for root in COMPOSITION_ROOT)


def core_files() -> list[Path]:
    def outside(name: str) -> bool:
        return in_composition_root(name) or within(name, "bot.providers")

    return [p for p in files(BOT) if not outside(module_name(p))]


def bot_modules() -> set[str]:
    return {module_name(p) for p in files(BOT)}


def bot_imports(path: Path) -> set[str]:
    """The modules of the ``bot`` package a file imports (``from bot.x import y`` counts as ``bot.x``)."""
    known = bot_modules()
    return {n for n in imports_of(path) if top(n) == "bot" and n in known and n != "bot"}


def test_the_core_imports_no_adapter_memory_sdk_or_provider():
    forbidden_tops = {"adapters", "memory", *PLATFORM_SDKS, *LIBRARIES_OUTSIDE_THE_CORE}
    offenders = {}
    for path in core_files():
        names = imports_of(path)
        bad = {top(n) for n in names if top(n) in forbidden_tops}
        bad |= {n for n in names if within(n, "bot.app") or within(n, "bot.providers")}
        if bad:
            offenders[module_name(path)] = sorted(bad)
    assert offenders == {}


def test_only_the_composition_root_imports_the_providers():
    users = {}
    for folder in (BOT, ROOT / "adapters", ROOT / "memory"):
        for path in files(folder):
            name = module_name(path)
            if in_composition_root(name) or within(name, "bot.providers"):
                continue
            used = {n for n in imports_of(path) if within(n, "bot.providers")}
            if used:
                users[name] = sorted(used)
    assert users == {}


def test_the_providers_import_no_adapter_memory_or_composition_root():
    offenders = {}
    for path in files(BOT / "providers"):
        names = imports_of(path)
        bad = {top(n) for n in names if top(n) in {"adapters", "memory", *PLATFORM_SDKS}}
        bad |= {n for n in names if within(n, "bot.app")}
        if bad:
            offenders[module_name(path)] = sorted(bad)
    assert offenders == {}


def test_memory_imports_only_the_contracts_from_bot():
    offenders = {}
    for path in files(ROOT / "memory"):
        names = imports_of(path)
        bad = bot_imports(path) - CONTRACTS
        bad |= {top(n) for n in names if top(n) in {"adapters", *PLATFORM_SDKS}}
        if bad:
            offenders[module_name(path)] = sorted(bad)
    assert offenders == {}


def test_adapters_import_only_the_contracts_from_bot_and_only_their_own_sdk():
    offenders = {}
    for path in files(ROOT / "adapters"):
        name = module_name(path)
        names = imports_of(path)
        bad = bot_imports(path) - CONTRACTS - PLUGIN_API
        bad |= {top(n) for n in names if top(n) in {"memory", *LIBRARIES_OUTSIDE_THE_CORE}}
        platform = name.split(".")[1] if name.count(".") >= 1 else ""
        bad |= {top(n) for n in names if top(n) in PLATFORM_SDKS and PLATFORM_SDKS[top(n)] != platform}
        other = {
            n for n in names
            if top(n) == "adapters" and n.count(".") >= 1 and n.split(".")[1] != platform
        }  # fmt: skip
        bad |= other
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def platforms() -> set[str]:
    return {p.name for p in (ROOT / "adapters").iterdir() if (p / "__init__.py").exists()}


def platform_names_in(path: Path, names: set[str]) -> set[str]:
    """Platform names a module uses in code: string constants (docstrings excepted) equal to a platform
    name or starting with "<platform>:" or "<platform>.", and attribute or variable names equal to one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }  # fmt: skip
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.lower()
            found |= {n for n in names if text == n or text.startswith((f"{n}:", f"{n}."))}
        elif isinstance(node, ast.Attribute) and node.attr in names:
            found.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in names:
            found.add(node.id)
    return found


def test_the_core_and_the_composition_root_name_no_platform():
    names = platforms()
    assert {"telegram", "discord", "matrix", "web"} <= names
    offenders = {}
    for path in files(BOT):
        if within(module_name(path), "bot.providers"):
            continue
        found = platform_names_in(path, names)
        if found:
            offenders[module_name(path)] = sorted(found)
    assert offenders == {}


def test_the_rules_see_real_imports():
    """Guard the guard: the resolver finds what the files really import."""
    assert "bot.events" in bot_imports(ROOT / "adapters" / "telegram" / "convert.py")
    assert "telegram" in {top(n) for n in imports_of(ROOT / "adapters" / "telegram" / "adapter.py")}
    assert "bot.ports" in bot_imports(ROOT / "memory" / "store.py")
    assert any(within(n, "bot.providers") for n in imports_of(BOT / "app" / "compose.py"))
    assert len(core_files()) > 30
    assert platform_names_in(ROOT / "adapters" / "telegram" / "__init__.py", platforms()) == {"telegram"}


def test_the_translation_contract_depends_on_nothing_else_of_bot():
    assert bot_imports(BOT / "i18n.py") == set()
