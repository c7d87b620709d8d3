"""Logging set-up with secret redaction: no token or key from the settings ever reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterable


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


def setup_logging(level: str, secrets: Iterable[str], quiet: Iterable[str] = ()) -> None:
    """Log to stderr with every secret redacted; libraries' chatty loggers (``QUIET`` and the ``quiet`` ones
    the plugins name) stay at WARNING or above."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in (*QUIET, *quiet):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
