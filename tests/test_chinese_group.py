"""A Chinese group talks to 派 with the shipped config.yaml and no model: every answer is Chinese.

The bot runs as shipped (aliases 派 and 派派, no bot.timezone: the host's zone, here Asia/Shanghai through
TZ) with the real memory store; only the platform is a fake and the clock is manual. The conversation covers
the first minute, recall, reminders, polls, to-dos, mistyped commands and the privacy commands, and then
checks that no bot message holds an English sentence.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import App
from bot.config import parse_settings
from bot.events import ReplyRef
from bot.skills.duejobs import DueLoop
from tests.fakes import FakeAdapter, ManualClock, make_message

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 12, 3, 9, 0, tzinfo=SHANGHAI)  # a Thursday morning

# What may stay Latin in a Chinese sentence: commands, mentions, setting keys, config paths, zone names, units.
_ALLOWED = re.compile(
    r"[/!][\w-]+|[@＠]\S+|https?://\S+|\b\w+_\w+\b|\b\w+(?:\.\w+)+\b|\b[\w+-]+/[\w+-]+\b|<[^>]*>|\[[^\]]*\]"
)
_ENGLISH_RUN = re.compile(r"[A-Za-z]{2,}(?:[ ,'’]+[A-Za-z]{2,}){2,}")


def english_sentences(text: str) -> list[str]:
    """Runs of three or more English words: a sentence (or most of one) left untranslated."""
    return _ENGLISH_RUN.findall(_ALLOWED.sub(" ", text))


def test_the_english_detector_sees_english_and_lets_commands_pass():
    assert english_sentences("I can't find anything about that in this group")
    assert english_sentences("用法：/remind <时间> <内容>，例如 /remind 2小时后 开站会") == []
    assert english_sentences("name: 派 (默认)\nquiet_hours: 关\ntimezone: Asia/Shanghai") == []


@pytest.fixture
async def group(tmp_path, monkeypatch):
    """The shipped config, a fake web platform, a manual clock at START; yields a ``Chat``."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # the host's local zone (bot.timezone is unset as shipped)
    settings = parse_settings((ROOT / "config.yaml").read_text(encoding="utf-8"), env={})
    assert settings.bot.timezone == "Asia/Shanghai" and set(settings.bot.aliases) == {"派", "派派"}
    settings = dataclasses.replace(settings, bot=dataclasses.replace(settings.bot, data_dir=str(tmp_path)))
    clock = ManualClock(START)
    adapter = FakeAdapter(platform="web")
    app = App(settings, adapters={"web": adapter}, clock=clock)
    await app.start()
    for value in app.background:  # the test ticks the due-work loops itself
        loop = getattr(value, "loop", None)
        if isinstance(loop, DueLoop):
            await loop.stop()
    yield Chat(app, adapter, clock)
    await app.stop()


class Chat:
    def __init__(self, app: App, adapter: FakeAdapter, clock: ManualClock) -> None:
        self.app, self.adapter, self.clock = app, adapter, clock

    async def say(self, who: str, text: str, reply_to: ReplyRef | None = None) -> list[str]:
        before = len(self.adapter.sent)
        msg = make_message(text, platform="web", chat="g", author=who, name=who, sent_at=self.clock.now(),
                           reply_to=reply_to)
        await self.adapter.inject(msg)
        await self.app.drain()
        self.clock.advance(30)
        return [o.text for o in self.adapter.sent[before:]]

    async def tick(self, skill: str) -> list[str]:
        before = len(self.adapter.sent)
        await self.app.skill(skill).loop.tick()
        return [o.text for o in self.adapter.sent[before:]]

    def bot_texts(self) -> list[str]:
        return [o.text for o in self.adapter.sent] + [text for _, text in self.adapter.edits]


async def test_a_chinese_group_talks_to_pai_entirely_in_chinese(group):
    (hello,) = await group.say("小李", "@派 你好")
    assert hello.startswith("👋 你好，我是派") and "/summary 昨天" in hello and "/poll 晚饭吃什么" in hello
    assert await group.say("小王", "周六的场地我订好了，在星光体育馆") == []
    (venue,) = await group.say("小李", "@派 谁订的场地？")
    assert "星光体育馆" in venue and "小王" in venue and "语言模型" in venue

    (meeting,) = await group.say("阿强", "派，明天下午三点提醒大家开会")
    assert meeting.startswith("⏰ 好的，到时提醒大家") and "明天 15:00" in meeting
    (report,) = await group.say("小李", "@派派 下午三点提醒我交报告")
    assert "今天 15:00" in report and "交报告" in report

    (poll,) = await group.say("小王", "/poll 晚饭吃什么？| 火锅 | 烧烤 | 日料 1分钟")
    assert poll.splitlines()[1:4] == ["1. 火锅", "2. 烧烤", "3. 日料"]
    poll_ref = ReplyRef(f"bot-{len(group.adapter.sent)}")
    for who, choice in (("小李", "1"), ("小王", "2"), ("阿强", "1")):
        assert await group.say(who, choice, reply_to=poll_ref) == []  # counted in place, no message per vote
    assert "3 票" in group.adapter.edits[-1][1]
    group.clock.advance(60)
    (result,) = await group.tick("polls")
    assert "胜出：火锅" in result and "已记录为决定 #1" in result

    (todo,) = await group.say("小李", "/todo add 买零食 @小王 周五前")
    assert todo.startswith("已添加待办 #2 买零食 — 小王，截止 明天 09:00")  # Friday is tomorrow
    (typo,) = await group.say("阿强", "/sumary")
    assert "你是想用 /summary 吗" in typo
    (unknown,) = await group.say("阿强", "/foo")
    assert "/help" in unknown

    for command in ("/summary", "/help", "/reminders", "/todo", "/decisions", "/settings", "/status",
                    "/what-do-you-know-about-me", "/files", "/pick 火锅 烧烤", "/check", "/settle"):
        assert await group.say("小李", command), command
    (thanks,) = await group.say("小王", "@派 谢谢")
    assert thanks.startswith("😊 不客气")

    # 下午三点 is 15:00 in the group's (the host's) zone: nothing fires at 14:59, both reminders at 15:00.
    today_3pm = START.replace(hour=15)
    group.clock.advance((today_3pm - group.clock.now()).total_seconds() - 60)
    assert await group.tick("reminders") == []
    group.clock.advance(60)
    (fired,) = await group.tick("reminders")
    assert fired == "⏰ 提醒 小李：交报告"
    group.clock.advance(timedelta(days=1).total_seconds())
    due, everyone = await group.tick("reminders")
    assert due.startswith("⏰ 待办到期了，小王：买零食")  # due at 09:00: the test jumped past it
    assert everyone == "⏰ 提醒大家：开会" and group.adapter.sent[-1].mention_user_ids == ()

    leftovers = {text: english_sentences(text) for text in group.bot_texts() if english_sentences(text)}
    assert not leftovers


async def test_the_first_hello_in_english_gets_a_welcome_not_an_apology(group):
    (hello,) = await group.say("alice", "@Pai hello")
    assert hello.startswith("👋 Hi, I'm Pai") and "/summary yesterday" in hello
    assert "can't find" not in hello and "Sorry" not in hello


@pytest.mark.parametrize(
    ("said", "kind"),
    [
        ("hello", "greeting"), ("Hi there!", "greeting"), ("你好呀", "greeting"), ("在吗？", "greeting"),
        ("thanks!", "thanks"), ("谢谢你", "thanks"), ("who are you?", "who"), ("你是谁", "who"),
        ("what can you do?", "what"), ("你能做什么？", "what"), ("hello, where do we eat?", None),
        ("你好，明天几点开会？", None), ("谁订的场地？", None), ("<@1234> hello", "greeting"),
        ("@pai_bot hi", "greeting"),
    ],
)
def test_greetings_thanks_and_questions_about_the_bot_are_told_apart(said, kind):
    from bot.skills.intro import kind_of

    assert kind_of(said) == kind
