"""Logging set-up with secret redaction: no token or key from the settings ever reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


QUIET = ("httpx", "httpcore", "LiteLLM", "litellm", "chromadb", "aiohttp.access")


def setup_logging(level: str, secrets: Iterable[str], quiet: Iterable[str] = (), fmt: str = "text") -> None:
    """Log to stderr with every secret redacted; libraries' chatty loggers (``QUIET`` and the ``quiet`` ones
    the plugins name) stay at WARNING or above. ``fmt`` "json" writes one JSON object per line (``time``,
    ``level``, ``logger``, ``message``, and ``exc_info`` for a traceback; python-json-logger)."""
    redact = RedactSecrets(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter(redact.redact) if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(redact)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in (*QUIET, *quiet):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def json_formatter(redact: Callable[[str], str]) -> logging.Formatter:
    """python-json-logger's formatter, with tracebacks redacted too (it formats them from ``exc_info``
    itself, past the filter's redacted ``exc_text``)."""
    from pythonjsonlogger.json import JsonFormatter

    class RedactingJsonFormatter(JsonFormatter):
        def formatException(self, ei):  # type: ignore[no-untyped-def]  # noqa: N802 - logging's name
            return redact(super().formatException(ei))

    return RedactingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )
