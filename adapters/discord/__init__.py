"""The Discord adapter (discord.py). ``adapters.discord.adapter`` holds ``DiscordAdapter`` and its factory;
the gateway client, conversion, catch-up sync, text rules and app registration live beside it."""
