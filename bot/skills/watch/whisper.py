"""Speech to timed lines with faster-whisper (CTranslate2), for watch sessions that have no subtitles.

Optional: ``pip install 'paibot[transcribe]'`` brings faster-whisper; the operator installs a Whisper model
(a CTranslate2 model directory, or a model name already in the local Hugging Face cache) and names it in
``skills.watch.transcription.model``. Nothing is downloaded here: the model is opened with ``local_files_only``,
so a missing model is an error the operator sees in the log, never a download from a hub. The model is
loaded on first use and kept; ``transcribe`` blocks and is called on a worker thread
(``bot.skills.watch.media.Transcriber``). faster-whisper is imported only when a model is first used.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


class TranscriptionUnavailable(RuntimeError):
    """faster-whisper or the configured model is not installed."""


class FasterWhisperTranscriber:
    def __init__(
        self, model: str, *, device: str = "cpu", compute_type: str = "int8", language: str = ""
    ) -> None:
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.language = language or None
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from faster_whisper import WhisperModel
                except ImportError as exc:
                    raise TranscriptionUnavailable(
                        "faster-whisper is not installed: pip install 'paibot[transcribe]'"
                    ) from exc
                try:
                    self._model = WhisperModel(
                        self.model_name,
                        device=self.device,
                        compute_type=self.compute_type,
                        local_files_only=True,
                    )
                except Exception as exc:  # the library raises several types for a model it cannot open
                    raise TranscriptionUnavailable(
                        f"the Whisper model {self.model_name!r} could not be opened: {exc}"
                    ) from exc
            return self._model

    def transcribe(self, path: Path) -> list[tuple[float, float, str]]:
        model = self._load()
        segments, _info = model.transcribe(str(path), language=self.language, vad_filter=True, beam_size=1)
        return [(float(s.start), float(s.end), str(s.text).strip()) for s in segments if str(s.text).strip()]


def build_transcriber(settings: Any) -> FasterWhisperTranscriber | None:
    """The transcriber ``skills.watch.transcription`` names, or None when it names none."""
    if settings.backend != "faster-whisper":
        return None
    return FasterWhisperTranscriber(
        settings.model, device=settings.device, compute_type=settings.compute_type, language=settings.language
    )
