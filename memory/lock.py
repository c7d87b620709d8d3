"""One process owns a data directory: an ``fcntl.flock`` on ``<data_dir>/paibot.lock``.

The lock is tied to the open file description, so the kernel releases it when the process dies (even by
``kill -9``); a stale lock file never blocks a restart. The file holds the owner's pid and host so a second
process can name them in its error.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from bot.errors import DataDirLocked

LOCK_NAME = "paibot.lock"


class DataDirLock:
    """A held data-directory lock; ``release()`` (or leaving the ``with`` block) frees it. Idempotent."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_data_dir_lock(path: Path | str) -> DataDirLock:
    """Create ``path`` if needed and lock it for this process.

    Raises ``bot.errors.DataDirLocked`` naming the owner's pid and host when another process holds it.
    """
    data_dir = Path(path).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        owner = _read_owner(fd)
        os.close(fd)
        raise DataDirLocked(
            f"the data directory {data_dir} is in use by another paibot process ({owner}); stop it first, "
            "or give this instance its own bot.data_dir"
        ) from exc
    except OSError:
        os.close(fd)
        raise
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": int(time.time())})
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)
    os.fsync(fd)
    return DataDirLock(lock_path, fd)


def _read_owner(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        info = json.loads(raw)
        return f"pid {info.get('pid')} on host {info.get('host')}"
    except (OSError, ValueError):
        return "owner unknown"
