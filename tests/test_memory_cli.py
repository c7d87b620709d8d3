"""`paibot memory ...` through `memory.cli.register`/`run`, as bot/app/cli.py wires it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app.forget import forget_command
from bot.config import Settings, parse_settings
from memory.cli import register, run
from memory.lock import acquire_data_dir_lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return parse_settings(
        f"bot:\n  data_dir: {tmp_path / 'data'}\npais:\n  bridge: [\"telegram:-5\", \"discord:6\"]\n"
        "adapters:\n  web:\n    enabled: false\n"
    )


def cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="paibot")
    register(parser.add_subparsers(dest="cmd", required=True))
    return run(parser.parse_args(["memory", *argv]), settings, forget=forget_command)


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


ROWS = [
    {"id": "1", "author": "alice", "text": "We picked Riverside Hall as the venue", "sent_at": "2024-02-01T10:00:00Z"},
    "{this is not json",
    {"id": "2", "author": "bob", "text": "我推荐金龙餐厅的饺子", "sent_at": "2024-02-01T10:05:00+08:00"},
    {"id": "3", "author": "carol", "text": "missing its time"},
    {"id": "4", "author": "carol", "text": "The dentist moved my appointment", "sent_at": 1706781600},
]


def test_import_skips_malformed_lines_by_number_and_is_idempotent(tmp_path: Path, settings: Settings,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    src = write_jsonl(tmp_path / "h.jsonl", ROWS)
    assert cli(settings, "import", str(src), "--group", "web:1") == 0
    err = capsys.readouterr().err
    assert "line 2:" in err and "line 4:" in err and "missing 'sent_at'" in err
    assert "3 new, 0 updated, 0 unchanged or refused (of 3 records); 2 malformed" in err
    assert cli(settings, "import", str(src), "--group", "web:1") == 0
    assert "0 new, 0 updated, 3 unchanged or refused (of 3 records)" in capsys.readouterr().err
    assert cli(settings, "export", "--group", "web:1") == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # time order (10:05+08:00 is 02:05Z); a JSONL file's ids live in their own namespace
    assert [r["id"] for r in out] == ["import:2", "import:1", "import:4"]
    assert all(r["is_bot"] is False for r in out)
    assert out[1]["author"] == "alice" and out[1]["sent_at"] == "2024-02-01T10:00:00+00:00"


def test_search_with_queries_file_prints_one_json_line_per_query(tmp_path: Path, settings: Settings,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    cli(settings, "import", str(write_jsonl(tmp_path / "h.jsonl", ROWS)), "--group", "web:1")
    queries = tmp_path / "q.txt"
    queries.write_text("which venue did we pick\n饺子\n\nzzzz qqqq\n")
    capsys.readouterr()
    assert cli(settings, "search", "--group", "web:1", "--limit", "2", "--queries", str(queries)) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4
    assert lines[0][0]["id"] == "import:1" and set(lines[0][0]) >= {"id", "author", "time", "text", "score"}
    assert lines[1][0]["id"] == "import:2" and lines[1][0]["author"] == "bob"
    assert lines[2] == [] and lines[3] == []
    assert all(len(hits) <= 2 for hits in lines)
    assert cli(settings, "search", "--group", "web:1", "--json", "dentist") == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "import:4"
    assert cli(settings, "search", "--group", "web:other", "venue") == 0  # another group: nothing
    assert capsys.readouterr().out == ""


def test_bridged_groups_share_one_memory(tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    cli(settings, "import", str(write_jsonl(tmp_path / "h.jsonl", ROWS)), "--group", "telegram:-5")
    capsys.readouterr()
    cli(settings, "search", "--group", "discord:6", "--json", "venue")
    assert json.loads(capsys.readouterr().out)[0]["id"] == "telegram:-5#import:1"  # qualified like live ids


def test_telegram_desktop_export(tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    export = {"name": "Friends", "type": "private_supergroup", "id": 5, "messages": [
        {"id": 10, "type": "service", "date": "2024-01-01T09:00:00", "actor": "Ann", "action": "join_group"},
        {"id": 11, "type": "message", "date": "2024-01-01T09:01:00", "date_unixtime": "1704099660",
         "from": "Ann", "from_id": "user42", "text": ["Let's meet at ", {"type": "bold", "text": "Café Luna"}]},
        {"id": 12, "type": "message", "date": "2024-01-01T09:02:00", "from": "Ben", "from_id": "user7",
         "text": "ok!", "reply_to_message_id": 11, "photo": "photos/1.jpg"},
        {"id": 13, "type": "message", "date": "not a date", "from": "Ben", "text": "broken"},
    ]}  # fmt: skip
    src = tmp_path / "result.json"
    src.write_text(json.dumps(export))
    assert cli(settings, "import", str(src), "--group", "telegram:-100") == 1  # a naive date and no --tz
    assert "has no time zone; give the zone" in capsys.readouterr().err
    assert cli(settings, "import", str(src), "--group", "telegram:-100", "--tz", "UTC") == 0
    err = capsys.readouterr().err
    assert "message 4:" in err and "2 new, 0 updated" in err and "left out: 1 service" in err
    cli(settings, "export", "--group", "telegram:-100")
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["text"] == "Let's meet at Café Luna" and out[0]["author_id"] == "42"  # as the live adapter
    assert out[1]["sent_at"] == "2024-01-01T09:02:00+00:00"
    assert out[1]["reply_to"] == "11" and "[shares photo]" in out[1]["text"]


def test_discord_chat_exporter_json(tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    export = {"guild": {"id": "1", "name": "G"}, "channel": {"id": "2", "name": "general"}, "messages": [
        {"id": "900", "type": "Default", "timestamp": "2024-03-01T12:00:00+00:00", "content": "game night friday?",
         "author": {"id": "55", "name": "kim", "nickname": "Kim", "isBot": False}, "attachments": []},
        {"id": "901", "type": "Reply", "timestamp": "2024-03-01T12:01:00+00:00", "content": "yes",
         "author": {"id": "56", "name": "lee", "isBot": False}, "reference": {"messageId": "900"},
         "attachments": [{"fileName": "board.png"}]},
        {"id": "902", "type": "Default", "timestamp": "2024-03-01T12:02:00+00:00", "content": "no author"},
    ]}  # fmt: skip
    src = tmp_path / "discord.json"
    src.write_text(json.dumps(export))
    assert cli(settings, "import", str(src), "--group", "discord:2", "--format", "discord") == 0
    assert "message 3:" in capsys.readouterr().err
    assert cli(settings, "forget", "--group", "discord:2", "--author", "55") == 0
    assert "forgot 1 messages" in capsys.readouterr().out
    cli(settings, "export", "--group", "discord:2")
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["author"], r["reply_to"]) for r in out] == [("901", "lee", "900")]
    assert cli(settings, "stats", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert [(p["pai"], p["records"], p["vectors"]) for p in stats["pais"]] == [("discord:2", 1, 1)]


def test_refuses_a_data_dir_owned_by_a_running_bot(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with acquire_data_dir_lock(settings.data_path):
        assert cli(settings, "stats") == 2
    assert "in use by another paibot process" in capsys.readouterr().err


def test_missing_file_and_bad_arguments(tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(settings, "import", str(tmp_path / "nope.jsonl"), "--group", "web:1") == 1
    assert cli(settings, "search", "--group", "web:1") == 1
    assert cli(settings, "forget", "--group", "web:1") == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "give a QUERY" in err and "--author" in err


def test_module_entry_point(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"bot:\n  data_dir: {tmp_path / 'd'}\nadapters:\n  web:\n    enabled: false\n")
    src = write_jsonl(tmp_path / "h.jsonl", ROWS[:1])
    base = [sys.executable, "-m", "bot", "--config", str(cfg), "memory"]
    imp = subprocess.run([*base, "import", str(src), "--group", "web:1"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)  # fmt: skip
    assert imp.returncode == 0, imp.stderr
    found = subprocess.run([*base, "search", "--group", "web:1", "--json", "venue"], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)  # fmt: skip
    assert json.loads(found.stdout)[0]["text"] == ROWS[0]["text"]  # type: ignore[index]
