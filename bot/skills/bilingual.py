"""Choosing between a sentence's English and Simplified Chinese form until the translation catalog
(``bot.i18n``) takes over: Chinese when the group's language setting says so, or (language ``auto``)
when the member wrote Chinese. Modules keep their sentences as ``(english, chinese)`` pairs in one place."""

from __future__ import annotations

import re

from bot.events import Message
from bot.services import Services

_CJK = re.compile(r"[\u4e00-\u9fff]")


def pick(services: Services, msg: Message, pair: tuple[str, str], **values: object) -> str:
    en, zh = pair
    language = str(services.group_setting(msg.chat.key, "language") or "").lower()
    chinese = language.startswith("zh") or (language in ("", "auto") and bool(_CJK.search(msg.text)))
    return (zh if chinese else en).format(**values)
