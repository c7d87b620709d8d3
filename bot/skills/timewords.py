"""The words and patterns ``bot.skills.timeparse`` understands (English and Chinese), kept apart from the
logic that turns them into times. Each pattern is searched in the text and its span removed."""

from __future__ import annotations

import re

WEEKDAYS_EN = {
    "monday": 0,
    "mon": 0,
    "tuesday": 1,
    "tue": 1,
    "tues": 1,
    "wednesday": 2,
    "wed": 2,
    "thursday": 3,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "friday": 4,
    "fri": 4,
    "saturday": 5,
    "sunday": 6,
}  # no "sat"/"sun": they are ordinary words too
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_ZH = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}

EN_WD = "|".join(sorted(WEEKDAYS_EN, key=len, reverse=True))
UNIT = r"(?:weeks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|m)"

# Each pattern is searched in turn and its span removed from the text.
RE_EVERY_EN = re.compile(
    rf"\b(?:every\s*(?:single\s+)?(?P<unit>day|weekday|week|morning|evening|(?P<wd>{EN_WD}))s?|(?P<daily>daily)"
    rf"|(?P<weekly>weekly)|(?P<wdays>weekdays))\b(?:\s+on\s+(?P<on>{EN_WD})\b)?",
    re.I,
)
RE_EVERY_ZH = re.compile(
    r"(?:每(?:个)?工作日|工作日每天|工作日)|每(?:天|日)|每(?:周|星期|礼拜)(?P<wd>[一二三四五六日天])?"
)
RE_IN_EN = re.compile(
    rf"\bin\s+(?P<spec>(?:\d+(?:\.\d+)?\s*{UNIT}(?![a-z])\s*(?:and\s+)?)+|an?\s+hour\s+and\s+a\s+half\b"
    r"|an?\s+(?:hour|minute|day|week)\b|half\s+an?\s+hour\b)",
    re.I,
)
RE_IN_ZH = re.compile(
    r"(?P<spec>(?:\d+\s*(?:分钟|分|个?小时|个?钟头|天|周|个?星期)\s*)+|半\s*(?:个)?小时)\s*(?:以)?后"
)
RE_DATE_ISO = re.compile(
    r"\b(?:on\s+)?(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[T\s]+(?P<H>\d{1,2}):(?P<M>\d{2}))?\b"
)
RE_DATE_MON = re.compile(
    r"\b(?:on\s+)?(?:(?P<m1>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<d1>\d{1,2})(?:st|nd|rd|th)?"
    r"|(?P<d2>\d{1,2})(?:st|nd|rd|th)?\s+(?P<m2>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*)\b",
    re.I,
)
RE_DATE_ZH = re.compile(r"(?:(?P<y>\d{4})年)?(?P<m>\d{1,2})月(?P<d>\d{1,2})(?:日|号)")
RE_DAY_EN = re.compile(
    rf"\b(?:(?P<rel>today|tonight|tomorrow|day\s+after\s+tomorrow)|(?:on\s+)?(?P<next>next\s+|this\s+)?(?P<wd>{EN_WD}))\b",
    re.I,
)
RE_DAY_ZH = re.compile(
    r"(?P<rel>大后天|后天|明天|明早|明晚|今天|今晚|今早)|(?P<next>下下|下|这|本)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天])"
)
RE_PERIOD_ZH = r"(?P<period>早上|早晨|上午|中午|下午|傍晚|晚上|夜里|凌晨|早|晚)?"
RE_TIME_ZH = re.compile(
    RE_PERIOD_ZH
    + r"\s*(?P<h>\d{1,2})\s*(?:点钟|点|時|时)\s*(?:(?P<half>半)|(?P<quarter>一刻|1刻)|(?P<m>\d{1,2})\s*分?)?"
    r"|(?P<period2>早上|早晨|上午|中午|下午|傍晚|晚上|凌晨)\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})"
    r"|(?P<noonzh>中午|正午|午夜|半夜)(?!\s*\d)"
)
RE_TIME_EN = re.compile(
    r"\b(?:at\s+)?(?:(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>a\.?m\.?|p\.?m\.?)(?![a-z])"
    r"|(?P<h24>\d{1,2}):(?P<m24>\d{2})\b|(?P<word>noon|midday|midnight)"
    r"|at\s+(?P<hbare>\d{1,2})\b(?![:.]\d))",
    re.I,
)
RE_PART_EN = re.compile(r"\b(?:in\s+the\s+|this\s+)?(?P<part>morning|afternoon|evening)\b", re.I)
FILLER_HEAD = re.compile(
    r"^(?:[\s,，:：]*(?:(?:please|pls|remind\s+(?:me|us|everyone|all)|remind|to|that|about|at|on)\b"
    r"|提醒(?:一下)?(?:我们|我|大家|所有人|全体成员|全体|各位)?|叫我|叫大家|通知大家|记得|请)[\s,，:：]*)+",
    re.I,
)
FILLER_TAIL = re.compile(
    r"[\s,，:：]*(?:\b(?:at|on|in|to|by|before|due)|提醒(?:我们|我|大家)?|之前)?[\s,，。.:：]*$", re.I
)
