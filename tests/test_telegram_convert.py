"""Telegram payloads (recorded shapes in tests/data/telegram/) -> paibot events, through PTB's own parser."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from telegram import Update

from adapters.telegram.convert import BotIdentity, Migration, migration_of, replies_to_me, to_event

DATA = Path(__file__).parent / "data" / "telegram"
ME = BotIdentity(777000, "pai_test_bot", "Pai")


def load(name: str) -> Update:
    return Update.de_json(json.loads((DATA / f"{name}.json").read_text(encoding="utf-8")), None)


def event(name: str, chat_key=str):
    ev = to_event(load(name), ME, chat_key)
    assert ev is not None
    return ev


def test_mention_after_emoji_uses_utf16_offsets():
    ev = event("mention_after_emoji")
    assert ev.mentions_me
    assert ev.event_id == "telegram:-1001234567890:4711"
    assert ev.author.display_name == "Alice Liddell" and ev.author.user_id == "42"
    assert ev.sent_at == datetime.fromtimestamp(1793534400, timezone.utc)
    assert ev.url == "https://t.me/c/1234567890/4711"
    assert not ev.is_direct and not ev.from_me and ev.thread is None


def test_text_mention_of_the_bot():
    assert event("text_mention").mentions_me


def test_command_for_another_bot_does_not_mention_me():
    ev = event("command_other_bot")
    assert not ev.mentions_me and ev.text.startswith("/start@other_bot")


def test_reply_to_bot_uses_the_quoted_part_and_public_link():
    ev = event("reply_to_bot_with_quote")
    assert ev.reply_to is not None
    assert ev.reply_to.message_id == "4700"
    assert ev.reply_to.text == "It is flat and shady."
    assert ev.reply_to.author is not None and ev.reply_to.author.is_bot
    assert replies_to_me(ev, ME)
    assert ev.url == "https://t.me/hikers_pub/4714"


def test_forum_topic_document():
    ev = event("forum_topic_document")
    assert ev.thread == "80"
    assert ev.url == "https://t.me/c/9876543210/80/88"
    (att,) = ev.attachments
    assert (att.kind, att.name, att.mime, att.size) == ("file", "route.pdf", "application/pdf", 48213)
    assert att.source == "BQACAgIAAxkBAAIBWGZ"
    assert ev.text == "the route"


def test_private_voice_note_is_a_direct_audio_message():
    ev = event("private_voice")
    assert ev.is_direct and ev.text == ""
    (att,) = ev.attachments
    assert att.kind == "audio" and att.mime == "audio/ogg" and att.name.endswith(".ogg")


def test_migration_is_detected_and_the_service_message_is_no_event():
    update = load("migrate_to_supergroup")
    assert migration_of(update) == Migration(-4242, -1004242)
    assert to_event(update, ME) is None


def test_chat_key_mapping_keeps_the_old_group_key():
    ev = event("mention_after_emoji", chat_key=lambda cid: "-4242" if cid == -1001234567890 else str(cid))
    assert ev.chat.key == "telegram:-4242"
    assert ev.url == "https://t.me/c/1234567890/4711"  # links still use the chat Telegram knows


def test_edited_forwarded_message_has_its_own_event_id():
    ev = event("forwarded_edited")
    assert ev.edited and ev.forwarded
    assert ev.event_id == "telegram:-1001234567890:4720:edit:1793534830"


def test_updates_without_a_message_are_not_events():
    assert to_event(load("callback_query"), ME) is None


@pytest.mark.parametrize("name", [p.stem for p in sorted(DATA.glob("*.json"))])
def test_every_recorded_event_survives_the_inbox_round_trip(name):
    from bot.events import Message

    ev = to_event(load(name), ME)
    if ev is not None:
        assert Message.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
