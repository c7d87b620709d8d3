"""Translations: every string marked in the code has a Chinese translation, and a group reads its language.

The catalog check extracts the marked strings with Babel exactly as ``make i18n`` does (``babel.cfg``), so a
new ``t._("...")`` without a Chinese entry fails here until someone runs ``make i18n`` and translates it.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from bot.config import parse_settings
from bot.events import Attachment
from bot.i18n import Catalogs, Translator, detect_language, placeholders, script_language
from bot.ports import BOT, CAPTION, COMMAND, FILE, QUESTION, STATEMENT, MemoryRecord
from bot.services import Services, record_of
from bot.state import StateDB
from tests.fakes import FakeMemory, ManualClock, make_message

ROOT = Path(__file__).resolve().parent.parent
CHINESE = "zh_CN"


@functools.cache
def extracted() -> dict[tuple[str | None, str], tuple[str | tuple[str, ...], str]]:
    """(context, msgid) -> (message, where) for every marked string of the code base."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = {}
    for filename, lineno, message, _, context in extract_from_dir(ROOT, method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]
        found[(context, msgid)] = (message, f"{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def catalogs() -> Catalogs:
    return Catalogs()


def test_extraction_finds_the_marked_strings():
    found = extracted()
    assert (None, "Only admins of this group can use /{command}.") in found  # a translator's t._(...)
    assert any(where.startswith("bot/limits.py") for _, where in found.values())  # N_(...) in a table


def test_every_marked_string_has_a_chinese_translation(catalogs):
    catalog = catalogs.catalog(CHINESE)
    problems = []
    for (context, msgid), (message, where) in sorted(extracted().items(), key=lambda kv: kv[1][1]):
        entry = catalog.get(message if isinstance(message, str) else message[0], context=context)
        if entry is None:
            problems.append(f"{where}: not in the catalog (run `make i18n`): {msgid!r}")
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry.fuzzy or not all(strings):
            problems.append(f"{where}: untranslated or fuzzy: {msgid!r}")
            continue
        sources = message if isinstance(message, tuple) else (message,)
        wanted = set().union(*(placeholders(s) for s in sources))
        for text in strings:
            if placeholders(text) != wanted and placeholders(text) | {"n"} != wanted | {"n"}:
                problems.append(f"{where}: the translation's {{fields}} differ from {wanted}: {text!r}")
    assert not problems, "\n".join(problems)


def test_the_catalog_holds_no_stale_entries(catalogs):
    """Entries whose string left the code go on the next ``make i18n``: the catalog says what the code says."""
    live = set(extracted())
    stale = [m.id for m in catalogs.catalog(CHINESE) if m.id and (m.context, m.id if isinstance(m.id, str)
             else m.id[0]) not in live]
    assert not stale, f"run `make i18n`: {stale[:5]}"


def test_a_translator_fills_fields_after_translating(catalogs):
    zh, en = catalogs.translator(CHINESE), catalogs.translator("en")
    assert en._("Only admins of this group can use /{command}.", command="settings") == (
        "Only admins of this group can use /settings."
    )
    assert zh._("Only admins of this group can use /{command}.", command="settings") == "只有本群管理员可以使用 /settings。"
    assert zh._("Not in the catalog {x}", x="{y}") == "Not in the catalog {y}"  # values are never templates


def test_plural_forms_follow_the_language(catalogs):
    en = catalogs.translator("en")
    assert en.ngettext("{n} vote", "{n} votes", 1) == "1 vote"
    assert en.ngettext("{n} vote", "{n} votes", 25) == "25 votes"


def test_lists_and_dates_are_written_the_languages_way(catalogs):
    zh, en = catalogs.translator(CHINESE), catalogs.translator("en")
    assert en.join(["A", "B", "C"]) == "A, B, and C"
    assert zh.join(["A", "B", "C"]) == "A、B和C"
    friday = datetime(2026, 12, 4, 15, 0, tzinfo=timezone.utc)
    assert zh.datetime(friday, "EEE HH:mm") == "周五 15:00"
    assert en.datetime(friday, "EEE HH:mm") == "Fri 15:00"


@pytest.mark.parametrize(
    ("written", "locale"),
    [
        ("中文", CHINESE), ("Chinese", CHINESE), ("简体中文", CHINESE), ("zh", CHINESE), ("zh-CN", CHINESE),
        ("zh_Hans", CHINESE), ("zh-TW", CHINESE), ("汉语", CHINESE), ("English", "en"), ("en-GB", "en"),
        ("英文", "en"), ("auto", None), ("", None), ("Klingon", None), ("fr", None),
    ],
)
def test_language_names_people_write_resolve_to_a_catalog(catalogs, written, locale):
    assert catalogs.resolve(written) == locale


def test_an_unknown_locale_reads_english(catalogs):
    t = catalogs.translator("fr")
    assert isinstance(t, Translator) and t.locale == "en"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("@Pai 明天下午三点提醒大家开会", "zh"), ("ok 好的", "zh"), ("hello @派", "en"), ("@派 hi", "en"),
        ("/poll 晚饭吃什么？| 火锅", "zh"), ("/help", None), ("see https://example.org/中文", "en"),
        ("こんにちは", "ja"), ("안녕하세요", "ko"), ("where are we eating on Friday?", "en"), ("👍", None),
        ("写信给 bob@example.com 吧", "zh"), ("mail (bob@example.com) now", "en"),
        # A long word with no "@" once took time quadratic in its length: on every message.
        ("x" * 200_000, "en"), ("好" * 50_000 + "x" * 200_000, "zh"),
    ],
)
def test_a_messages_language_is_judged_by_its_script(text, language):
    assert script_language(text) == language


def test_the_language_most_recent_messages_use_wins():
    assert detect_language(["hi", "你好", "大家好"]) == "zh"
    assert detect_language(["hi", "你好"]) == "zh"  # a tie goes to the latest
    assert detect_language(["/help", "👍"]) is None


# ----------------------------------------------------------------------------- a group's language


async def services_with(tmp_path, language: str = "auto", texts: Sequence[str] = ()) -> Services:
    """Services whose ``bot.language`` is ``language``; the group web:g has said ``texts``."""
    settings = parse_settings(f"bot: {{data_dir: '{tmp_path}', language: '{language}'}}\n")
    memory = FakeMemory()
    for text in texts:
        await memory.record(record_of(make_message(text, platform="web", chat="g"), "web:g"))
    return Services(settings, memory, StateDB(tmp_path / "state.db"), ManualClock())


async def test_auto_reads_the_language_of_the_groups_recent_messages(tmp_path):
    s = await services_with(tmp_path, "auto", ["谁订的场地？", "我订的", "@派 几点开始"])
    assert await s.locale_of("web:g") == CHINESE
    assert (await s.translator("web:g"))._(
        "Only admins of this group can use /{command}.", command="x"
    ).startswith("只有")


async def test_without_messages_auto_falls_back_to_english(tmp_path):
    s = await services_with(tmp_path)
    assert await s.locale_of("web:g") == "en"


async def test_the_bot_wide_language_is_the_default_for_every_group(tmp_path):
    s = await services_with(tmp_path, "中文", ["hello all"])
    assert await s.locale_of("web:g") == CHINESE  # a setting is not overruled by what people write


async def test_a_groups_own_setting_wins_over_the_bot_default(tmp_path):
    s = await services_with(tmp_path, "中文")
    await s.set_group_setting("web:g", "language", "English")
    assert await s.locale_of("web:g") == "en"
    await s.set_group_setting("web:g", "language", "auto")
    assert await s.locale_of("web:g") == CHINESE  # nothing written yet: the bot default


async def test_a_group_set_to_auto_follows_its_members_over_the_bot_default(tmp_path):
    s = await services_with(tmp_path, "中文", ["are we still on for Friday?", "yes, 7pm"])
    await s.set_group_setting("web:g", "language", "auto")
    assert await s.locale_of("web:g") == "en"


async def test_the_bots_own_messages_do_not_count(tmp_path):
    s = await services_with(tmp_path, "auto", ["大家好"])
    for i in range(5):
        await s.memory.record(MemoryRecord(f"b{i}", "web:g", "web:g", "@me", "Pai", "Here is what I found",
                                           datetime(2026, 11, 2, tzinfo=timezone.utc), is_bot=True))
    assert await s.locale_of("web:g") == CHINESE


async def test_the_names_of_shared_files_do_not_count(tmp_path):
    s = await services_with(tmp_path, "auto", ["今晚一起看这部片子吧"])
    shared = dataclasses.replace(
        make_message("/watch", platform="web", chat="g"),
        attachments=(Attachment("video", "harbour.webm", "video/webm", 1000, "f1"),
                     Attachment("file", "harbour subtitles.vtt", "text/vtt", 100, "f2")),
    )  # fmt: skip
    await s.memory.record(record_of(shared, "web:g"))
    assert "[video: harbour.webm]" in (await s.memory.recent("web:g", 5))[-1].text
    assert await s.locale_of("web:g") == CHINESE


async def test_files_captions_other_bots_and_command_names_do_not_count(tmp_path):
    # a Chinese group that posts English documents, runs bare commands and hosts an English bot reads Chinese
    s = await services_with(tmp_path, "auto", ["大家好", "@派 明天几点集合？"])
    when = datetime(2026, 11, 3, tzinfo=timezone.utc)
    for i in range(4):
        await s.memory.record(MemoryRecord(f"f{i}", "web:g", "web:g", "alice", "Alice",
                                           "The tenant shall pay the deposit within ten days", when, kind=FILE))
        await s.memory.record(MemoryRecord(f"i{i}", "web:g", "web:g", "alice", "Alice",
                                           "a whiteboard with a floor plan", when, kind=CAPTION))
        await s.memory.record(MemoryRecord(f"c{i}", "web:g", "web:g", "bob", "Bob", "/summary", when,
                                           kind=COMMAND))
        await s.memory.record(MemoryRecord(f"b{i}", "web:g", "web:g", "ci", "CI", "Build passed on main", when,
                                           kind=STATEMENT, is_bot=True))
    assert await s.locale_of("web:g") == CHINESE


async def test_commands_do_not_decide_a_groups_language(tmp_path):
    # commands with words in them are still commands: a Chinese group running English ones reads Chinese
    s = await services_with(tmp_path, "auto", ["大家好", "周五去哪儿吃饭？"])
    for text in ("/remind tomorrow at 9 to call the venue", "/poll where do we eat | pizza | sushi",
                 "/search venue deposit", "/summary since Monday"):
        await s.memory.record(record_of(make_message(text, platform="web", chat="g"), "web:g"))
    await s.memory.record(MemoryRecord("c9", "web:g", "web:g", "bob", "Bob", "/settings language auto",
                                       datetime(2026, 11, 3, tzinfo=timezone.utc), kind=COMMAND))
    assert [r.kind for r in await s.memory.recent("web:g", 3)] == [COMMAND] * 3
    assert await s.locale_of("web:g") == CHINESE


async def test_questions_to_the_bot_do_not_decide_a_groups_language(tmp_path):
    # members talk Chinese to each other and ask the bot in English: the group reads Chinese
    s = await services_with(tmp_path, "auto", ["今晚谁订的位子？", "我订了，七点"])
    for text in ("@Pai what time is dinner?", "Pai, where did we book?", "@Pai remind me at 6 please",
                 "@Pai what did Bob say about the table?"):
        await s.memory.record(record_of(make_message(text, platform="web", chat="g"), "web:g"))
    assert {r.kind for r in await s.memory.recent("web:g", 4)} == {QUESTION}
    assert await s.locale_of("web:g") == CHINESE


async def test_where_members_only_talk_to_the_bot_their_questions_decide(tmp_path):
    # a direct chat (or a platform showing the bot only what is addressed to it) holds no statements
    s = await services_with(tmp_path, "auto")
    when = datetime(2026, 11, 3, tzinfo=timezone.utc)
    for i, text in enumerate(("明天几点开会？", "帮我总结一下", "/help")):
        kind = COMMAND if text.startswith("/") else QUESTION
        await s.memory.record(MemoryRecord(f"q{i}", "web:g", "web:g", "ann", "Ann", text, when, kind=kind))
    await s.memory.record(MemoryRecord("b1", "web:g", "web:g", "@me", "Pai", "Tomorrow at 10.", when,
                                       kind=BOT, is_bot=True))
    assert await s.locale_of("web:g") == CHINESE


async def test_a_new_group_whose_first_words_are_a_command_reads_the_commands_language(tmp_path):
    s = await services_with(tmp_path, "auto", ["/remind 每天 9点 打卡"])
    assert await s.locale_of("web:g") == CHINESE
    await s.memory.record(record_of(make_message("what's up everyone", platform="web", chat="g"), "web:g"))
    assert await s.locale_of("web:g") == "en"  # once members say something, that decides


async def test_a_group_keeps_its_detected_language_when_its_memory_is_emptied(tmp_path):
    s = await services_with(tmp_path, "auto", ["大家好", "今晚吃什么"])
    assert await s.locale_of("web:g") == CHINESE
    await s.memory.forget("web:g", author_id="alice")  # e.g. retention or /forget-me removed everything
    assert await s.locale_of("web:g") == CHINESE
