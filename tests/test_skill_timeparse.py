"""The deterministic time parser behind /remind and /summary: English and Chinese tables."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.skills.digest import parse_since
from bot.i18n import Catalogs
from bot.skills.timeparse import describe_rule, next_occurrence, parse_when

EN = Catalogs().translator("en")

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)  # Monday 2026-11-02 09:00 in Shanghai

ENGLISH = [
    ("in 2h stand up", "Mon 2026-11-02 11:00", None, "stand up"),
    ("in 30 min tea", "Mon 2026-11-02 09:30", None, "tea"),
    ("in 1h30m deploy", "Mon 2026-11-02 10:30", None, "deploy"),
    ("in an hour and a half go", "Mon 2026-11-02 10:30", None, "go"),
    ("in half an hour check the oven", "Mon 2026-11-02 09:30", None, "check the oven"),
    ("in 3 days renew the domain", "Thu 2026-11-05 09:00", None, "renew the domain"),
    ("tomorrow 9:00 call the venue", "Tue 2026-11-03 09:00", None, "call the venue"),
    ("tomorrow at 2pm dentist", "Tue 2026-11-03 14:00", None, "dentist"),
    ("remind us Friday 3pm to submit the report", "Fri 2026-11-06 15:00", None, "submit the report"),
    ("on fri at 3:30pm demo", "Fri 2026-11-06 15:30", None, "demo"),
    ("next monday 10am review", "Mon 2026-11-09 10:00", None, "review"),
    ("monday standup", "Mon 2026-11-09 09:00", None, "standup"),  # today's 09:00 has just passed
    ("tonight at 8 movie", "Mon 2026-11-02 20:00", None, "movie"),
    ("at 15 tea", "Mon 2026-11-02 15:00", None, "tea"),
    ("noon lunch", "Mon 2026-11-02 12:00", None, "lunch"),
    ("2026-12-24 18:00 party", "Thu 2026-12-24 18:00", None, "party"),
    ("Nov 5 noon lunch", "Thu 2026-11-05 12:00", None, "lunch"),
    ("5 Dec pay rent", "Sat 2026-12-05 09:00", None, "pay rent"),
    ("every day 9am standup", "Tue 2026-11-03 09:00", "daily 09:00", "standup"),
    ("every weekday at 9:30 standup", "Mon 2026-11-02 09:30", "weekdays 09:30", "standup"),
    ("every monday 10:00 sync", "Mon 2026-11-02 10:00", "weekly 0 10:00", "sync"),
    ("every week on friday 5pm drinks", "Fri 2026-11-06 17:00", "weekly 4 17:00", "drinks"),
    ("daily 8am vitamins", "Tue 2026-11-03 08:00", "daily 08:00", "vitamins"),
]

CHINESE = [
    ("每天早上9点提醒我打卡", "Tue 2026-11-03 09:00", "daily 09:00", "打卡"),
    ("每天 9点 打卡", "Tue 2026-11-03 09:00", "daily 09:00", "打卡"),
    ("每个工作日9点 站会", "Tue 2026-11-03 09:00", "weekdays 09:00", "站会"),
    ("每周五下午3点 周报", "Fri 2026-11-06 15:00", "weekly 4 15:00", "周报"),
    ("每星期一 10:00 例会", "Mon 2026-11-02 10:00", "weekly 0 10:00", "例会"),
    ("半小时后 喝水", "Mon 2026-11-02 09:30", None, "喝水"),
    ("两小时后开会", "Mon 2026-11-02 11:00", None, "开会"),
    ("十分钟后 泡面", "Mon 2026-11-02 09:10", None, "泡面"),
    ("3天后 续费", "Thu 2026-11-05 09:00", None, "续费"),
    ("明天下午3点 交报告", "Tue 2026-11-03 15:00", None, "交报告"),
    ("明早 跑步", "Tue 2026-11-03 09:00", None, "跑步"),
    ("后天 10点半 体检", "Wed 2026-11-04 10:30", None, "体检"),
    ("大后天 九点一刻 面试", "Thu 2026-11-05 09:15", None, "面试"),
    ("周二十点 开会", "Tue 2026-11-03 10:00", None, "开会"),
    ("下周一 10:00 例会", "Mon 2026-11-09 10:00", None, "例会"),
    ("星期五 晚上8点 聚餐", "Fri 2026-11-06 20:00", None, "聚餐"),
    ("11月5日 14:00 面试", "Thu 2026-11-05 14:00", None, "面试"),
    ("今晚8点 跑步", "Mon 2026-11-02 20:00", None, "跑步"),
    ("下午3:30 喝咖啡", "Mon 2026-11-02 15:30", None, "喝咖啡"),
    ("中午12点 吃饭", "Mon 2026-11-02 12:00", None, "吃饭"),
    ("中午1点 午休", "Mon 2026-11-02 13:00", None, "午休"),
]


@pytest.mark.parametrize(("text", "due", "rule", "what"), ENGLISH + CHINESE)
def test_parse_when_table(text, due, rule, what):
    when = parse_when(text, NOW, SH)
    assert when is not None, text
    assert when.due.astimezone(SH).strftime("%a %Y-%m-%d %H:%M") == due
    assert when.rule == rule and when.text == what


@pytest.mark.parametrize("text", ["hello world", "stand up", "in 2 months", "开会", ""])
def test_no_time_named(text):
    assert parse_when(text, NOW, SH) is None


def test_a_passed_time_today_is_returned_as_past_so_the_caller_can_refuse_it():
    when = parse_when("today 8am breakfast", NOW, SH)
    assert when is not None and when.due < NOW


def test_recurrence_is_dst_safe_and_described():
    berlin = ZoneInfo("Europe/Berlin")
    before_switch = datetime(2026, 10, 24, 0, 0, tzinfo=timezone.utc)  # DST ends on 2026-10-25
    nxt = next_occurrence("daily 09:00", before_switch, berlin)
    after = next_occurrence("daily 09:00", nxt, berlin)
    assert nxt.astimezone(berlin).hour == 9 and after.astimezone(berlin).hour == 9
    assert (after - nxt).total_seconds() == 25 * 3600
    assert describe_rule("weekly 4 15:00", EN) == "every Friday at 15:00"
    assert describe_rule("weekdays 09:30", EN) == "every weekday at 09:30"


SINCE = [
    ("yesterday", "2026-11-01 00:00"),
    ("昨天", "2026-11-01 00:00"),
    ("today", "2026-11-02 00:00"),
    ("3h", "2026-11-02 06:00"),
    ("90 min", "2026-11-02 07:30"),
    ("2 days", "2026-10-31 09:00"),
    ("since monday", "2026-10-26 00:00"),
    ("周五", "2026-10-30 00:00"),
    ("since 2026-10-01", "2026-10-01 00:00"),
    ("last week", "2026-10-26 09:00"),
    ("3小时", "2026-11-02 06:00"),
]


@pytest.mark.parametrize(("text", "start"), SINCE)
def test_parse_since_table(text, start):
    since = parse_since(text, NOW, SH)
    assert since is not None and since.astimezone(SH).strftime("%Y-%m-%d %H:%M") == start


def test_parse_since_unknown_and_empty():
    assert parse_since("whenever", NOW, SH) is None and parse_since("", NOW, SH) is None
