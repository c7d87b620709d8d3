"""Watch and listen together (一起看 / 一起听). See ``bot.skills.watch.skill`` and docs/watch-together.md.

sync.py      the clock-sync model (pure)           cues.py, embedded.py   subtitles and media tracks
store.py     sessions and lines (SQLite)            sessions.py            running sessions, player control
media.py     where lines come from, memory records  asking.py, answers.py  questions, recaps, digests
texts.py     what members read (English, Chinese)   skill.py               commands, observer, endings
"""

from __future__ import annotations

from typing import Any

from bot.commands import CommandRegistry
from bot.services import Services
from bot.skills.attachment_log import shared_log
from bot.skills.skilldb import skill_db

EXTRAS_KEY = "skills.watch"
TRANSCRIBER_KEY = (
    "watch.transcriber"  # set by the composition root when a transcription backend is configured
)


def build(services: Services, registry: CommandRegistry) -> tuple[list[Any], list[Any]]:
    from bot.skills.watch.media import CueSources
    from bot.skills.watch.sessions import WatchSessions
    from bot.skills.watch.skill import WatchSkill
    from bot.skills.watch.store import WatchStore

    db, db_created = skill_db(services)
    attachments, log_created = shared_log(services.extras, services.settings.data_path)
    sessions = WatchSessions(services, WatchStore(db))
    skill = WatchSkill(
        services, sessions, CueSources(services, services.extras.get(TRANSCRIBER_KEY)), attachments
    )
    services.extras[EXTRAS_KEY] = skill
    services.forget_hooks.append(skill.forget_member)
    background: list[Any] = [db] if db_created else []
    if log_created:
        background.append(attachments)
    background.append(skill)
    return [skill], background
