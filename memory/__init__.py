"""paibot's group memory: the SQLite transcript (source of truth) with a per-pai lexical index and a per-pai
chromadb vector index, searched by hybrid retrieval.

The composition root needs only these:

    lock = acquire_data_dir_lock(settings.data_path)   # raises bot.errors.DataDirLocked
    memory = await open_memory(settings)               # a bot.ports.MemoryStore
    ...
    await memory.close(); lock.release()
"""

from memory.lock import DataDirLock, acquire_data_dir_lock
from memory.store import HybridMemoryStore, open_memory, open_memory_sync

__all__ = ["DataDirLock", "HybridMemoryStore", "acquire_data_dir_lock", "open_memory", "open_memory_sync"]
