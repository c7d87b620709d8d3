"""The welcome note: a group's first answer says what the member records and how to opt out (``bot.welcome``).

The note is added to the first reply the ledger claims in a group and the group is marked welcomed as soon
as it is claimed (before it is sent), so a reply resent after an outage never makes a second note. A streamed
first reply that could not open gives its claim back, and the note goes to the next answer."""

from __future__ import annotations

from bot.i18n import N_
from bot.middleware import Handler, ReplyDraft
from bot.services import Services

WELCOME = N_(
    "👋 I'm {name}, this group's AI member. I remember what is said here (this group only) so I can answer "
    "with context. Mention me or reply to me to ask something; /help lists what I can do. "
    "/what-do-you-know-about-me shows what I keep about you, /optout stops recording your messages and "
    "/forget-me removes them."
)
WELCOMED = "welcomed"  # the group_kv key marking a welcomed group


class Welcome:
    def __init__(self, services: Services) -> None:
        self._s = services

    async def __call__(self, draft: ReplyDraft, call_next: Handler[ReplyDraft]) -> None:
        s = self._s
        key = draft.message.chat.key
        if s.settings.bot.welcome and await s.state.group_get(key, WELCOMED) is None:
            t = await s.translator(key)
            draft.notes.append(t._(WELCOME, name=s.name_shown(key, t)))
            draft.on_claimed.append(lambda: s.state.group_set(key, WELCOMED, "1"))
            draft.on_released.append(lambda: s.state.group_delete(key, WELCOMED))
        await call_next(draft)
