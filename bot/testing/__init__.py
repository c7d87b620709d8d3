"""Test kits for plugin authors (they need pytest and pytest-asyncio, the ``test`` extra).

bot.testing.inbox              ``MemoryInbox``: an in-memory ``IntakeSink`` with the real inbox's semantics
bot.testing.adapter_contract   ``AdapterContract``: the contract suite every adapter runs against itself
"""
