"""The optional transcription backend: configured by name in the watch skill's section, never downloading a
model, failing with a sentence the operator can act on when faster-whisper or the model is missing."""

from __future__ import annotations

import importlib.util

import pytest

from bot.config import parse_settings
from bot.errors import ConfigError
from bot.skills.watch.whisper import FasterWhisperTranscriber, TranscriptionUnavailable, build_transcriber


def test_the_backend_is_off_unless_named_and_needs_a_model():
    assert parse_settings("{}").skills.watch.transcription.backend == ""
    assert build_transcriber(parse_settings("{}").skills.watch.transcription) is None
    with pytest.raises(ConfigError, match="skills.watch.transcription.model"):
        parse_settings("skills: {watch: {transcription: {backend: faster-whisper}}}")
    with pytest.raises(ConfigError, match="skills.watch.transcription.backend"):
        parse_settings("skills: {watch: {transcription: {backend: cloud-magic, model: x}}}")
    s = parse_settings(
        "skills: {watch: {transcription: {backend: faster-whisper, model: /models/whisper-small, language: zh}}}"
    )
    t = build_transcriber(s.skills.watch.transcription)
    assert (
        isinstance(t, FasterWhisperTranscriber)
        and t.model_name == "/models/whisper-small"
        and t.language == "zh"
    )


def test_a_missing_library_or_model_is_an_operator_facing_error(tmp_path):
    t = FasterWhisperTranscriber(str(tmp_path / "no-such-model"))
    with pytest.raises(TranscriptionUnavailable) as err:
        t.transcribe(tmp_path / "song.ogg")
    if importlib.util.find_spec("faster_whisper") is None:
        assert "pip install 'paibot[transcribe]'" in str(err.value)
    else:
        assert "could not be opened" in str(err.value)
