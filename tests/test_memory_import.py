"""Imports use the identities the live adapters produce and never overwrite anything; what real exports hold
is kept (forwards, stickers, link targets, polls); files that are not chat histories are refused in one line.
Driven through ``paibot memory ...`` (``memory.cli`` with the composition root's forget)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.app.forget import forget_command
from bot.config import Settings, parse_settings
from bot.ports import MemoryRecord
from memory.cli import register, run
from memory.transcript import Transcript

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return parse_settings(
        f"bot:\n  data_dir: {tmp_path / 'data'}\npais:\n  family: [\"telegram:-1001\", \"telegram:-1002\"]\n"
        "adapters:\n  web:\n    enabled: false\n"
    )


def cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="paibot")
    register(parser.add_subparsers(dest="cmd", required=True))
    return run(parser.parse_args(["memory", *argv]), settings, forget=forget_command)


def exported(settings: Settings, group: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert cli(settings, "export", "--group", group) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def tg_message(mid: int, text, who: str = "Ann", from_id: str = "user719119535", **extra) -> dict:
    return {"id": mid, "type": "message", "date": "2024-05-01T10:00:00", "date_unixtime": str(1714557600 + mid),
            "from": who, "from_id": from_id, "text": text, **extra}  # fmt: skip


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_telegram_export_keeps_what_a_reader_saw_with_live_ids(tmp_path, settings, capsys):
    export = {"name": "Hikers", "type": "private_supergroup", "id": 1001, "messages": [
        tg_message(1, ["see ", {"type": "text_link", "text": "the map", "href": "https://maps.example/trail"}]),
        tg_message(2, "trail closed Sunday", forwarded_from="Trail News"),
        tg_message(3, "", media_type="sticker", sticker_emoji="👍", file="stickers/1.webp"),
        tg_message(4, "", poll={"question": "Saturday or Sunday?", "answers": [{"text": "Sat"}, {"text": "Sun"}]}),
        tg_message(5, ""),  # nothing to keep
        tg_message(6, "from the channel", who="News", from_id="channel1234"),
        {"id": 7, "type": "service", "date": "2024-05-01T10:00:07", "actor": "Ann", "action": "pin_message"},
        {"id": 8, "type": "something_new", "date": "2024-05-01T10:00:08"},
    ]}  # fmt: skip
    assert cli(settings, "import", str(write(tmp_path / "result.json", export)), "--group", "telegram:-1003") == 0
    err = capsys.readouterr().err
    assert "5 new, 0 updated, 0 unchanged or refused (of 5 records)" in err
    assert "left out: 1 empty, 1 service, 1 of kinds this importer does not know (something_new: 1)" in err
    rows = exported(settings, "telegram:-1003", capsys)
    texts = [r["text"] for r in rows]
    assert texts[0] == "see the map (https://maps.example/trail)"
    assert texts[1] == "[forwarded from Trail News] trail closed Sunday"
    assert "[sticker 👍]" in texts[2] and texts[3] == "[poll: Saturday or Sunday?: Sat / Sun]"
    assert [r["author_id"] for r in rows] == ["719119535"] * 4 + ["-1001234"]  # what the live adapter writes
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "6"]


def test_imported_history_is_forgotten_with_the_live_identity(tmp_path, settings, capsys):
    export = {"name": "Hikers", "type": "private_supergroup", "id": 1001,
              "messages": [tg_message(1, "my phone number is 555-0199"), tg_message(2, "hi", who="Ben", from_id="user7")]}
    cli(settings, "import", str(write(tmp_path / "result.json", export)), "--group", "telegram:-1003")
    assert cli(settings, "forget", "--group", "telegram:-1003", "--author", "719119535") == 0
    assert "forgot 1 messages" in capsys.readouterr().out
    assert [r["text"] for r in exported(settings, "telegram:-1003", capsys)] == ["hi"]


def test_two_groups_of_one_pai_importing_the_same_message_ids_overwrite_nothing(tmp_path, settings, capsys):
    for chat, text in (("-1001", "from the first group"), ("-1002", "from the second group")):
        export = {"name": chat, "type": "private_supergroup", "id": 1, "messages": [tg_message(42, text)]}
        assert cli(settings, "import", str(write(tmp_path / f"{chat}.json", export)), "--group", f"telegram:{chat}") == 0
    rows = exported(settings, "telegram:-1001", capsys)  # the shared memory
    assert sorted((r["id"], r["text"]) for r in rows) == [
        ("telegram:-1001#42", "from the first group"), ("telegram:-1002#42", "from the second group")]


def test_a_jsonl_import_lives_in_its_own_namespace_and_edits_need_the_same_author(tmp_path, settings, capsys):
    rows = [{"id": "42", "author": "Ann", "author_id": "a1", "text": "the old plan", "sent_at": "2024-01-01T10:00:00Z"},
            {"id": "43", "author": "Ben", "author_id": "b1", "text": "   ", "sent_at": "2024-01-01T10:01:00Z"}]
    src = tmp_path / "h.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli(settings, "import", str(src), "--group", "web:7") == 0
    assert "1 new" in capsys.readouterr().err
    # A live web message numbered 42 is another message: it does not overwrite the imported one.
    store = Transcript(settings.data_path / "memory.sqlite3")
    live = MemoryRecord("42", "web:7", "web:7", "m-bob", "Bob", "a live line", datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert len(store.insert([live], lambda r: ("", r.text))) == 1
    store.close()
    edited = [{**rows[0], "text": "the new plan"}, {**rows[0], "author_id": "mallory", "text": "hijacked"}]
    src.write_text("\n".join(json.dumps(r) for r in edited) + "\n")
    assert cli(settings, "import", str(src), "--group", "web:7") == 0
    assert "0 new, 1 updated, 1 unchanged or refused (of 2 records)" in capsys.readouterr().err
    texts = {r["id"]: (r["author_id"], r["text"]) for r in exported(settings, "web:7", capsys)}
    assert texts == {"import:42": ("a1", "the new plan"), "42": ("m-bob", "a live line")}


def test_a_whole_account_export_needs_chat(tmp_path, settings, capsys):
    export = {"about": "...", "chats": {"about": "...", "list": [
        {"name": "Family", "type": "private_group", "id": 11, "messages": [tg_message(1, "family news")]},
        {"name": "Hikers", "type": "private_supergroup", "id": 22, "messages": [tg_message(1, "trail news")]},
    ]}}  # fmt: skip
    src = write(tmp_path / "result.json", export)
    assert cli(settings, "import", str(src), "--group", "telegram:-1003") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chat" in err[0] and "Family (11)" in err[0] and "Hikers (22)" in err[0]
    assert cli(settings, "import", str(src), "--group", "telegram:-1003", "--chat", "hikers") == 0
    assert cli(settings, "import", str(src), "--group", "telegram:-1004", "--chat", "11") == 0
    assert [r["text"] for r in exported(settings, "telegram:-1003", capsys)] == ["trail news"]
    assert [r["text"] for r in exported(settings, "telegram:-1004", capsys)] == ["family news"]


def test_auto_detection_reads_the_structure_and_unknown_discord_kinds_are_reported(tmp_path, settings, capsys):
    export = {"messages": [
        {"id": "1", "type": "Default", "timestamp": "2024-03-01T12:00:00+00:00", "content": "hello",
         "author": {"id": "55", "name": "kim"}},
        {"id": "2", "type": "GuildMemberJoin", "timestamp": "2024-03-01T12:01:00+00:00", "content": "",
         "author": {"id": "56", "name": "lee"}},
        {"id": "3", "type": "PollResult", "timestamp": "2024-03-01T12:02:00+00:00", "content": "",
         "author": {"id": "56", "name": "lee"}},
        {"id": "4", "type": "Default", "timestamp": "2024-03-01T12:03:00+00:00", "content": "",
         "author": {"id": "56", "name": "lee"}, "stickers": [{"name": "wave"}]},
    ], "exportedAt": "x" * 8000, "guild": {"id": "1", "name": "G"}, "channel": {"id": "2", "name": "general"}}
    src = write(tmp_path / "export.txt", export)  # no telling suffix, "guild" far past the first 4 KB
    assert cli(settings, "import", str(src), "--group", "discord:2") == 0
    err = capsys.readouterr().err
    assert "(discord): 2 new" in err and "1 service" in err
    assert "1 of kinds this importer does not know (PollResult: 1)" in err
    assert [r["text"] for r in exported(settings, "discord:2", capsys)] == ["hello", "[sticker wave]"]


@pytest.mark.parametrize(("name", "content", "fmt"), [
    ("notes.csv", "date,who,what\n2024-01-01,ann,hi\n", "auto"),
    ("random.json", json.dumps({"hello": "world"}), "auto"),
    ("discord.json", json.dumps({"guild": {}, "channel": {}, "messages": []}), "jsonl"),
    ("table.jsonl", "\n".join(json.dumps({"a": i}) for i in range(50)), "auto"),
])  # fmt: skip
def test_a_file_of_another_kind_is_refused_in_one_line(tmp_path, settings, capsys, name, content, fmt):
    src = tmp_path / name
    src.write_text(content)
    assert cli(settings, "import", str(src), "--group", "web:1", "--format", fmt) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("paibot memory:"), err


def test_old_data_moves_to_the_live_identities_once(tmp_path, settings, capsys):
    path = settings.data_path / "memory.sqlite3"
    settings.data_path.mkdir(parents=True)
    old = Transcript(path)
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    old.insert([
        MemoryRecord("42", "pai:family", "telegram:-1001", "user719119535", "Ann", "imported long ago", when),
        MemoryRecord("42", "telegram:-1003", "telegram:-1003", "user719119535", "Ann", "a plain group", when),
        MemoryRecord("telegram:-1002#7", "pai:family", "telegram:-1002", "719119535", "Ann", "live", when),
    ], lambda r: ("", r.text))  # fmt: skip
    old.close()
    assert cli(settings, "export", "--group", "telegram:-1001") == 0
    rows = {(r["id"], r["author_id"]) for r in (json.loads(x) for x in capsys.readouterr().out.splitlines())}
    assert rows == {("telegram:-1001#42", "719119535"), ("telegram:-1002#7", "719119535")}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT author_id FROM records WHERE pai = 'telegram:-1003'").fetchone() == ("719119535",)
        assert db.execute("SELECT value FROM kv WHERE key = 'migration:live-ids'").fetchone() == ("1",)


def test_piping_the_export_into_head_prints_no_traceback(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"bot:\n  data_dir: {tmp_path / 'd'}\nadapters:\n  web:\n    enabled: false\n")
    src = tmp_path / "h.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "author": "a", "text": f"line {i} " + "x" * 200,
                                         "sent_at": "2024-01-01T00:00:00Z"}) for i in range(3000)))  # fmt: skip
    base = f"{sys.executable} -m bot --config {cfg} memory"
    subprocess.run(f"{base} import {src} --group web:1", shell=True, check=True, cwd=ROOT, capture_output=True,
                   timeout=300)  # fmt: skip
    piped = subprocess.run(f"{base} export --group web:1 | head -n 1", shell=True, cwd=ROOT, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert piped.stdout.count("\n") == 1 and "Traceback" not in piped.stderr and "Error" not in piped.stderr, piped.stderr
