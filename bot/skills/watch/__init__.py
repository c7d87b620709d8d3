"""Watch and listen together (一起看 / 一起听). See ``bot.skills.watch.skill`` and docs/watch-together.md.

sync.py      the clock-sync model (pure)           cues.py, embedded.py   subtitles and media tracks
store.py     sessions and lines (SQLite)            sessions.py            running sessions, player control
media.py     where lines come from, memory records  asking.py, answers.py  questions, recaps, digests
whisper.py   optional transcription (faster-whisper) skill.py              commands, observer, endings

The ``watch`` skill plugin; its section is ``skills.watch`` in config.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import ConfigError
from bot.plugins import SkillEnv, SkillPlugin, SkillSet

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


def build(env: SkillEnv) -> SkillSet:
    from bot.skills.watch.media import CueSources
    from bot.skills.watch.sessions import WatchSessions
    from bot.skills.watch.skill import WatchSkill
    from bot.skills.watch.store import WatchStore
    from bot.skills.watch.whisper import build_transcriber

    settings: WatchSettings = env.settings
    services = env.services
    sessions = WatchSessions(services, WatchStore(env.shared.db))
    sources = CueSources(services, build_transcriber(settings.transcription))
    skill = WatchSkill(services, sessions, sources, env.shared.attachments)
    services.erasers.append(skill)  # /forget-me, memory forget and retention reach sessions and lines
    return SkillSet([skill], [skill])


plugin = SkillPlugin(
    name="watch",
    build=build,
    settings=WatchSettings,
    validate=validate,
    order=45,
    description=(
        "watch and listen together: synced players in the web group, subtitles in memory, "
        "questions on moments"
    ),
)
