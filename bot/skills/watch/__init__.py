"""Watch and listen together (一起看 / 一起听). See ``bot.skills.watch.skill`` and docs/watch-together.md.

sync.py      the clock-sync model (pure)           cues.py, embedded.py   subtitles and media tracks
store.py     sessions and lines (SQLite)            sessions.py            running sessions, player control
media.py     where lines come from, memory records  asking.py, answers.py  questions, recaps, digests
whisper.py   optional transcription (faster-whisper) skill.py              commands, observer, endings

The ``watch`` skill plugin; its section is ``skills.watch`` in config.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.commands import CommandRegistry
from bot.errors import ConfigError
from bot.services import Services
from bot.skills import builtin
from bot.skills.attachment_log import shared_log
from bot.skills.skilldb import skill_db

EXTRAS_KEY = "skills.watch"
TRANSCRIPTION_BACKENDS = ("", "faster-whisper")


@dataclass(frozen=True)
class TranscriptionSettings:
    """Speech to subtitles for sessions without any (docs/watch-together.md). Off unless a backend is named;
    the model is one the operator installed (a path or the name of a model already in the local cache)."""

    backend: str = ""  # "" (none) | faster-whisper
    model: str = ""
    device: str = "cpu"
    compute_type: str = "int8"
    language: str = ""  # "" = detect; "zh", "en", ...


@dataclass(frozen=True)
class WatchSettings:
    """``skills.watch`` in config.yaml."""

    enabled: bool = True
    transcription: TranscriptionSettings = TranscriptionSettings()


def validate(cfg: WatchSettings, path: str) -> None:
    tr = cfg.transcription
    if tr.backend not in TRANSCRIPTION_BACKENDS:
        raise ConfigError(
            f"{path}.transcription.backend", f"must be '' (none) or 'faster-whisper', got {tr.backend!r}"
        )
    if tr.backend and not tr.model:
        raise ConfigError(
            f"{path}.transcription.model", "name the Whisper model you installed (a path or a model name)"
        )


def build(
    services: Services, registry: CommandRegistry, settings: WatchSettings | None = None
) -> tuple[list[Any], list[Any]]:
    from bot.skills.watch.media import CueSources
    from bot.skills.watch.sessions import WatchSessions
    from bot.skills.watch.skill import WatchSkill
    from bot.skills.watch.store import WatchStore
    from bot.skills.watch.whisper import build_transcriber

    settings = settings or WatchSettings()
    db, db_created = skill_db(services)
    attachments, log_created = shared_log(services.extras, services.settings.data_path)
    sessions = WatchSessions(services, WatchStore(db))
    sources = CueSources(services, build_transcriber(settings.transcription))
    skill = WatchSkill(services, sessions, sources, attachments)
    services.extras[EXTRAS_KEY] = skill
    services.forget_hooks.append(skill.forget_member)
    background: list[Any] = [db] if db_created else []
    if log_created:
        background.append(attachments)
    background.append(skill)
    return [skill], background


plugin = builtin(
    "watch",
    build,
    45,
    "watch and listen together: synced players in the web group, subtitles in memory, questions on moments",
    settings=WatchSettings,
    validate=validate,
)
