"""What several built-in skills share, typed: the skills' database, the group register (decisions and to-dos),
the log of posted files and the optional image generator.

One ``SkillResources`` per app, built by the composition root and handed to every skill plugin
(``SkillEnv.shared``). The stores are opened on first use; ``opened`` lists them in opening order so the app
starts them before, and stops them after, the skills that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.skills.attachment_log import AttachmentLog
    from bot.skills.images import ImageGenerator
    from bot.skills.register import Register
    from bot.skills.skilldb import SkillDB


class SkillResources:
    def __init__(
        self,
        data_dir: Path,
        *,
        image_generator: ImageGenerator | None = None,
        erasers: list[Any] | None = None,
    ) -> None:
        self._data_dir = Path(data_dir)
        self._erasers = erasers  # the app's ContentErasers: each store holding member content joins them
        self.image_generator = image_generator  # llm.image_model through a provider, else None
        self.opened: list[Any] = []  # stores opened so far (async start/stop), in order
        self._db: SkillDB | None = None
        self._register: Register | None = None
        self._attachments: AttachmentLog | None = None

    @property
    def db(self) -> SkillDB:
        """The skills' SQLite database (reminders, polls, the register, known groups)."""
        if self._db is None:
            from bot.skills.skilldb import SkillDB

            self._db = SkillDB(self._data_dir / "skills.sqlite3")
            self.opened.append(self._db)
            if self._erasers is not None:
                from bot.skills.forgetting import SkillTablesEraser

                self._erasers.append(SkillTablesEraser(self._db))
        return self._db

    @property
    def register(self) -> Register:
        """The group register: decisions and to-dos, shared by summaries and polls."""
        if self._register is None:
            from bot.skills.register import Register

            from bot.skills.reminder_store import ReminderStore

            self._register = Register(self.db, ReminderStore(self.db))
        return self._register

    @property
    def attachments(self) -> AttachmentLog:
        """The log of files and images posted in each chat (and of documents read)."""
        if self._attachments is None:
            from bot.skills.attachment_log import AttachmentLog

            self._attachments = AttachmentLog(self._data_dir / "attachments.sqlite3")
            self.opened.append(self._attachments)
            if self._erasers is not None:
                self._erasers.append(self._attachments)
        return self._attachments
