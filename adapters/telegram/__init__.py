"""The Telegram adapter (python-telegram-bot). ``adapters.telegram.adapter`` holds ``TelegramAdapter`` and
its factory; intake, conversion, text rules, flood control and send records live beside it."""
