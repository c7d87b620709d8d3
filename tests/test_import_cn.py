"""`paibot memory import --format qq|wechat`: the QQ message manager's .txt export and the WeChat export
tools' CSV, read in the given time zone (+08:00 unless told), with stable ids, QQ numbers as the member ids
the onebot adapter uses, and clear errors for anything else."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.config import Settings, parse_settings
from memory import chat_exports
from memory.cli import register
from tests.test_memory_cli import cli

QQ_EXPORT = """消息记录（此消息记录为文本格式，不支持重新导入）

================================================================
消息分组:我的群聊
================================================================
消息对象:读书会
================================================================

2024-03-01 20:15:01 【群主】张三(123456789)
这周读第三章
记得带笔记

2024-03-01 20:16:22 李四<lisi@example.com>
[图片]

2024-03-01 20:16:30 系统消息(10000)
王五加入了本群

2024-03-01 20:17:00 张三(123456789)
好

2024-03-01 20:17:00 张三(123456789)
好
"""

WECHAT_CSV = (
    "localId,TalkerId,Type,SubType,IsSender,CreateTime,Status,StrContent,StrTime,Remark,NickName,Sender\n"
    "1,5,1,0,0,1709295301,2,周末去爬山吗,2024-03-01 20:15:01,,小明,wxid_aaa\n"
    '2,5,1,0,1,1709295322,2,"好啊, 几点?",2024-03-01 20:15:22,,我,\n'
    "3,5,3,0,0,1709295330,2,<msg><img/></msg>,2024-03-01 20:15:30,,小明,wxid_aaa\n"
    "4,5,10000,0,0,1709295340,2,你撤回了一条消息,2024-03-01 20:15:40,,,\n"
    "5,5,1,0,0,not-a-time,2,坏行,,,小明,wxid_aaa\n"
    "6,5,1,0,0,2024-03-01 20:20:00,2,本地时间的行,,,小红,wxid_bbb\n"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return parse_settings(f"bot:\n  data_dir: {tmp_path / 'data'}\nadapters:\n  web:\n    enabled: false\n")


def export(settings: Settings, group: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert cli(settings, "export", "--group", group) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_qq_export_imports_once_in_beijing_time_with_qq_numbers(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "读书会.txt"
    src.write_text(QQ_EXPORT, encoding="utf-8-sig")
    assert cli(settings, "import", str(src), "--group", "onebot:445566", "--format", "qq") == 0
    err = capsys.readouterr().err
    assert "UTC+08:00 (the default; pass --tz to change it)" in err and "(qq): 4 new, 0 updated" in err
    assert cli(settings, "import", str(src), "--group", "onebot:445566") == 0  # auto-detected, again
    assert "(qq): 0 new, 0 updated, 4 unchanged" in capsys.readouterr().err
    rows = export(settings, "onebot:445566", capsys)
    assert [r["text"] for r in rows] == ["这周读第三章\n记得带笔记", "[图片]", "好", "好"]
    first = rows[0]
    assert first["author_id"] == "123456789" and first["author"] == "张三"  # as the onebot adapter names him
    assert first["sent_at"] == "2024-03-01T12:15:01+00:00"
    assert rows[1]["author_id"] == "lisi@example.com"
    assert len({r["id"] for r in rows}) == 4 and all(r["id"].startswith("qq:") for r in rows)


def test_a_wechat_csv_imports_text_and_placeholders(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "chat.csv"
    src.write_text(WECHAT_CSV, encoding="utf-8")
    assert (
        cli(
            settings,
            "import",
            str(src),
            "--group",
            "wecom:wrkA",
            "--format",
            "wechat",
            "--tz",
            "Asia/Shanghai",
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "reading the export's times as Asia/Shanghai" in err and "row 6:" in err
    rows = export(settings, "wecom:wrkA", capsys)
    assert [(r["author"], r["text"]) for r in rows] == [
        ("小明", "周末去爬山吗"),
        ("我", "好啊, 几点?"),
        ("小明", "[图片]"),
        ("小红", "本地时间的行"),
    ]
    assert rows[0]["author_id"] == "wxid_aaa" and rows[1]["author_id"] == "me"
    assert (
        rows[0]["sent_at"] == "2024-03-01T12:15:01+00:00"
        and rows[3]["sent_at"] == "2024-03-01T12:20:00+00:00"
    )


def test_the_ids_depend_on_content_and_time_only(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text(QQ_EXPORT, encoding="utf-8")
    later = tmp_path / "b.txt"  # a later export holding the same messages and one more
    later.write_text(QQ_EXPORT + "\n2024-03-02 09:00:00 李四<lisi@example.com>\n早\n", encoding="gb18030")
    ids = [r.id for r in chat_exports.read(src, "qq", "onebot:1", "onebot:1", None)]
    more = [r.id for r in chat_exports.read(later, "qq", "onebot:1", "onebot:1", None)]
    assert more[: len(ids)] == ids and len(more) == len(ids) + 1


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("just some notes\nwithout any header\n", "qq", "does not look like a QQ message manager export"),
        ("a,b,c\n1,2,3\n", "wechat", "lacks the column(s) localId, CreateTime, IsSender, StrContent"),
        ("消息对象:甲\n消息对象:乙\n2024-01-01 10:00:00 x(10001)\nhi\n", "qq", "holds 2 chats"),
    ],
)  # fmt: skip
def test_anything_else_is_a_clear_error(
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    content: str,
    fmt: str,
    message: str,
) -> None:
    src = tmp_path / "x.txt"
    src.write_text(content, encoding="utf-8")
    assert cli(settings, "import", str(src), "--group", "onebot:1", "--format", fmt) == 1
    assert message in capsys.readouterr().err


def test_a_bad_time_zone_is_refused_before_reading(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "x.txt"
    src.write_text(QQ_EXPORT, encoding="utf-8")
    assert (
        cli(settings, "import", str(src), "--group", "onebot:1", "--format", "qq", "--tz", "Mars/Olympus")
        == 1
    )
    assert "--tz 'Mars/Olympus'" in capsys.readouterr().err
    assert chat_exports.parse_tz("-05:30").utcoffset(None).total_seconds() == -5.5 * 3600  # type: ignore[union-attr]


QQ_WITH_THE_BOT = """消息对象:读书会

2024-03-01 20:15:01 张三(123456789)
场地订在图书馆三楼

2024-03-01 20:16:00 李四(222333444)
@派 场地在哪儿？

2024-03-01 20:16:02 派(10086)
张三说场地订在图书馆三楼。

2024-03-01 20:16:30 李四(222333444)
/summary

2024-03-01 20:17:00 小助手(10087)
场地在图书馆三楼（机器人回复）
"""


def test_imported_messages_get_their_kinds_and_the_bots_are_not_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memory.cli import run
    from memory.kinds import KindRules

    settings = parse_settings(
        f"bot:\n  data_dir: {tmp_path / 'data'}\n  name: Pai\n  aliases: [派]\nadapters:\n  web:\n    enabled: false\n"
    )
    parser = argparse.ArgumentParser(prog="paibot")
    register(parser.add_subparsers(dest="cmd", required=True))

    def cli_as_bot(*argv: str) -> int:  # as `paibot memory`, which knows the bot's names
        return run(parser.parse_args(["memory", *argv]), settings, kinds=KindRules.of(settings))

    src = tmp_path / "读书会.txt"
    src.write_text(QQ_WITH_THE_BOT, encoding="utf-8")
    # the bot's account shows under its name (派), another bot account only under its number (--bot-id)
    assert cli_as_bot("import", str(src), "--group", "onebot:445566", "--bot-id", "10087") == 0
    capsys.readouterr()
    assert cli_as_bot("export", "--group", "onebot:445566") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["author_id"], r["kind"]) for r in rows] == [
        ("123456789", "statement"), ("222333444", "question"), ("10086", "bot"), ("222333444", "command"),
        ("10087", "bot"),
    ]  # fmt: skip
    assert cli_as_bot("search", "--group", "onebot:445566", "--json", "场地在哪里") == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and hits[0]["author_id"] == "123456789"
    assert not {"10086", "10087"} & {h["author_id"] for h in hits}  # the bots' words are not evidence
