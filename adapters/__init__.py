"""Platform adapters, one subpackage per platform. Each subpackage's ``plugin`` (a
``bot.plugins.AdapterPlugin``) is registered under the ``paibot.adapters`` entry-point group in
pyproject.toml, exactly like a third-party adapter's; the core finds them there and names none of them.
"""
