"""Files under the data directory are private to the bot's user: 0700 directories, 0600 files, whatever
created them (SQLite, chromadb, the skills), and whatever an older version left readable is tightened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bot.app import App
from bot.app.datadir import make_private
from bot.config import parse_settings
from tests.fakes import FakeAdapter, make_message


@pytest.fixture(autouse=True)
def keep_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def loose_entries(root: Path) -> list[str]:
    """Entries (the root included) that another local user could read, with their modes."""
    out = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            out.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return out


async def test_a_running_bot_keeps_everything_it_writes_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "from-an-older-version.db").write_text("old")
    os.chmod(data / "from-an-older-version.db", 0o644)
    (data / "old-dir").mkdir()
    os.chmod(data / "old-dir", 0o755)
    settings = parse_settings(f"bot: {{data_dir: '{data}', welcome: false}}\nadapters: {{web: {{enabled: false}}}}\n")
    adapter = FakeAdapter()
    app = App(settings, adapters={"fake": adapter})
    await app.start()
    try:
        await adapter.inject(make_message("@Pai a line to remember", mentions_me=True))
        await app.drain()
        await app.services.memory.flush()  # type: ignore[union-attr]
    finally:
        await app.stop()
    assert (data / "memory.sqlite3").exists() and (data / "chroma").is_dir() and (data / "paibot.db").exists()
    assert loose_entries(data) == []
    print(f"\nprivate: {sum(1 for _ in data.rglob('*'))} entries under the data directory, none readable by others")


def test_make_private_is_a_no_op_on_a_private_directory(tmp_path):
    data = tmp_path / "d"
    assert make_private(data) == 0
    (data / "x").write_text("x")
    assert stat.S_IMODE((data / "x").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert make_private(data) == 0
