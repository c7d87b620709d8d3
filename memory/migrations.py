"""One-time migrations of the transcript, run when the memory opens (each marked done in ``kv``).

``live-ids``: imports used to keep identities the live adapters never produce, so forgetting a member
missed her imported history and two groups' imports into one shared memory overwrote each other. Records
get the live forms (``memory.importers``): Telegram authors ``user<n>`` / ``channel<n>`` / ``chat<n>``
become ``<n>`` / ``-100<n>`` / ``-<n>``, and in a pai bridging several chats every id is qualified by its
chat (``<chat key>#<id>``) like live records; an imported copy of a record that is also there live goes.
Changed ids are re-indexed (a tombstone drops the old vector). JSONL imports cannot be told apart from live
records afterwards and keep their ids (re-import them to move them into the ``import:`` namespace).
"""

from __future__ import annotations

import logging

from memory.importers import telegram_user_id
from memory.transcript import Transcript

log = logging.getLogger("paibot.memory")

LIVE_IDS = "migration:live-ids"


def migrate(transcript: Transcript) -> None:
    if transcript.kv_get(LIVE_IDS) is None:
        counts = migrate_live_ids(transcript)
        if any(counts.values()):
            log.warning("memory: moved imported records to the live identities (%s)",
                        ", ".join(f"{n} {k}" for k, n in counts.items()))  # fmt: skip


def migrate_live_ids(transcript: Transcript) -> dict[str, int]:
    authors = ids = duplicates = 0
    with transcript.transaction() as db:
        for (old,) in db.execute(
            "SELECT DISTINCT author_id FROM records WHERE chat_key LIKE 'telegram:%'"
            " AND (author_id GLOB 'user[0-9]*' OR author_id GLOB 'channel[0-9]*' OR author_id GLOB 'chat[0-9]*')"
        ).fetchall():
            live = telegram_user_id(old)
            if live != old:
                authors += db.execute(
                    "UPDATE records SET author_id = ? WHERE author_id = ? AND chat_key LIKE 'telegram:%'",
                    (live, old),
                ).rowcount
        bare = db.execute(
            "SELECT seq, pai, id, chat_key FROM records WHERE pai != chat_key"
            " AND substr(id, 1, length(chat_key) + 1) != chat_key || '#'"
        ).fetchall()
        for seq, pai, rid, chat in bare:
            qualified = f"{chat}#{rid}"
            if db.execute("SELECT 1 FROM records WHERE pai = ? AND id = ?", (pai, qualified)).fetchone():
                duplicates += len(transcript.delete_where(db, pai, "seq = ?", (seq,)))
                continue
            db.execute("UPDATE records SET id = ?, indexed = 0 WHERE seq = ?", (qualified, seq))
            db.execute("INSERT OR IGNORE INTO index_tombstones(pai, id) VALUES (?, ?)", (pai, rid))
            ids += 1
        db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, '1')", (LIVE_IDS,))
    return {"author ids": authors, "record ids": ids, "duplicates removed": duplicates}
