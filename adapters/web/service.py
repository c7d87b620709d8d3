"""What the web group's HTTP layer needs from the adapter: ``GroupService``, which
``adapters.web.adapter.WebAdapter`` implements (a seam: ``adapters.web.http`` and ``adapters.web.watch`` are
written against it, never against the adapter)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adapters.web.members import StoredMember
from adapters.web.store import StoredFile, StoredGroup
from bot.ports import MetricsSource

if TYPE_CHECKING:
    from adapters.web.attachments import StagedFile
    from adapters.web.live import LiveHub
    from adapters.web.quota import Reservation
    from adapters.web.signin import SignedIn
    from adapters.web.watch import WebWatch


class GroupService(Protocol):
    """What the HTTP layer needs from the adapter (``adapters.web.WebAdapter`` implements it)."""

    bot_name: str
    max_text_length: int
    hub: LiveHub
    watch: WebWatch
    metrics: MetricsSource | None

    async def create_group(self, name: str, creator: StoredMember | None = None) -> StoredGroup: ...

    async def add_member(self, nickname: str) -> tuple[StoredMember, str]:
        """A new member and its secret key."""
        ...

    async def member_by_key(self, key: str) -> StoredMember | None: ...

    async def rename_member(self, member: StoredMember, nickname: str) -> StoredMember: ...

    async def sign_out_others(self, member: StoredMember, key: str) -> int: ...

    async def find_group(self, address: str) -> StoredGroup | None: ...

    async def find_by_number(self, number: str) -> StoredGroup | None:
        """The numbered group only if it lets people join by number (else None, as for no group)."""
        ...

    async def is_group_admin(self, group: StoredGroup, member: StoredMember | None) -> bool: ...

    async def set_join_by_number(self, group: StoredGroup, allowed: bool) -> StoredGroup: ...

    def number_json(self, group: StoredGroup) -> dict[str, Any]: ...

    async def find_invite(self, invite: str) -> StoredGroup | None: ...

    async def new_links(self, group: StoredGroup) -> StoredGroup: ...

    def group_json(self, group: StoredGroup) -> dict[str, Any]: ...

    async def post_message(
        self, group: StoredGroup, author: StoredMember, text: str, reply_to: int | None,
        nonce: str | None, uploads: Sequence[StagedFile] = (), space: Reservation | None = None,
    ) -> dict[str, Any]:
        """Store and commit a message; owns ``uploads`` and ``space`` from the call on (removes the uploads
        and releases the space if it fails)."""
        ...

    async def list_messages(self, group: StoredGroup, after: int | None, limit: int) -> dict[str, Any]: ...

    async def reserve_space(self, group: StoredGroup, expected: int) -> Reservation | None:
        """Storage quota space for a message of about ``expected`` bytes (``ApiError(507)`` past the quota;
        None when there is no quota), reserved before anything is written."""
        ...

    async def stage_upload(
        self, group: StoredGroup, name: str | None, mime: str | None, chunks: AsyncIterator[bytes],
        space: Reservation | None = None,
    ) -> StagedFile:
        """Write one uploaded file aside, its bytes counted in ``space`` (``ApiError(413)`` past the size
        limit, ``ApiError(507)`` past the storage quota; nothing kept)."""
        ...

    async def drop_uploads(self, staged: Sequence[StagedFile]) -> None: ...

    async def find_file(self, file_id: str) -> StoredFile | None: ...

    def file_path(self, stored: StoredFile) -> Path: ...

    def limits_json(self) -> dict[str, int]: ...

    async def redeem_sign_in(self, token: str) -> SignedIn | None:
        """Use a one-time sign-in token: the member (made, or given a new key), its key and the address of
        the group to open, or None (used, expired, unknown)."""
        ...

    def check_served(self, group: StoredGroup) -> None:
        """Raise ``ApiError(403)`` for a group the bot does not serve (nothing of it may be stored)."""
        ...
