"""Test kits for plugin authors (the contract suite needs pytest and pytest-asyncio, the ``test`` extra).

    bot.testing.inbox              ``MemoryInbox``: an in-memory ``IntakeSink`` with the real inbox's semantics;
                                   ``MemoryKeyValueStore``: an in-memory ``bot.ports.KeyValueStore``
    bot.testing.adapter_contract   ``AdapterContract``: the contract suite every adapter runs against itself
"""
