"""The data directory is private to the bot's user.

Everything paibot keeps (databases, the vector index, uploaded files) holds group content, so nothing under
the data directory may be readable by other local users: ``make_private`` sets the process umask to 077
(files 0600, directories 0700 from then on, whichever library creates them: SQLite, chromadb, the web
group's uploads), creates the directory 0700 and tightens whatever an older version left group- or
world-readable. Called at start-up by ``App.start`` and by the ``paibot`` commands that open the data.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("paibot.app")

PRIVATE_UMASK = 0o077


def make_private(data_dir: Path) -> int:
    """Umask 077, ``data_dir`` 0700 (created if missing), every file below 0600 and every directory 0700.
    Returns how many entries had to be tightened."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fixed = _tighten(data_dir, 0o700)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            fixed += _tighten(Path(root, name), 0o700)
        for name in files:
            fixed += _tighten(Path(root, name), 0o600)
    if fixed:
        log.info("made %d entries under the data directory private to this user", fixed)
    return fixed


def _tighten(path: Path, mode: int) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed meanwhile (a temp file of a starting library)
        return 0
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
        return 0
    path.chmod(mode)
    return 1
