"""The composition root: the one place that wires concrete parts (memory, LLM provider, adapters, skills)
into the platform-free core. Nothing in the core imports this package.

    bot.app.compose   ``App``: builds and runs one paibot (start, stop, run_forever)
    bot.app.cli       the ``paibot`` command line
"""

from bot.app.compose import App

__all__ = ["App"]
