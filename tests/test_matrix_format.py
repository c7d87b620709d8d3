"""The Matrix adapter's pure rules: safe HTML, splitting, reply fallbacks, commands, inviters, conversion."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from adapters.matrix.convert import Me, Quoted, RoomFacts, replied_event_id, to_message
from adapters.matrix.format import (
    markdown_to_html,
    matrix_to,
    mentions_user_link,
    message_content,
    normalise_command,
    split_text,
    strip_reply_fallback,
    transaction_id,
)
from adapters.matrix.sync import inviter_allowed

ME = Me("@pai:hs.test", ("Pai",), ("!", "/"), "/")
ROOM = RoomFacts("!r:hs.test", "Team", False, {"@alice:hs.test": "Alice", "@pai:hs.test": "Pai"})


def event(content: dict, sender: str = "@alice:hs.test", event_id: str = "$e1") -> dict:
    return {"type": "m.room.message", "event_id": event_id, "sender": sender,
            "origin_server_ts": 1_800_000_000_000, "content": content}


# --------------------------------------------------------------------------- outgoing text


def test_markdown_subset_renders_and_everything_else_is_escaped() -> None:
    html = markdown_to_html(
        '**bold** *it* ~~gone~~ `a<b` [x](https://e.org/?q="1") <img src=x onerror=alert(1)>')
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html and "<del>gone</del>" in html
    assert "<code>a&lt;b</code>" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_only_http_and_mailto_links_become_anchors() -> None:
    assert "<a " not in markdown_to_html("[click](javascript:alert(1))")
    assert markdown_to_html("[site](https://a.org/x)") == '<a href="https://a.org/x">site</a>'


def test_code_blocks_keep_their_content_verbatim_and_escaped() -> None:
    html = markdown_to_html("see:\n```python\nif a < b and **x**:\n    pass\n```")
    assert '<pre><code class="language-python">if a &lt; b and **x**:\n    pass</code></pre>' in html


@given(st.text(max_size=300))
def test_no_raw_tag_ever_survives(text: str) -> None:
    html = markdown_to_html(text)
    stripped = html
    for tag in ("<strong>", "</strong>", "<em>", "</em>", "<del>", "</del>", "<code>", "</code>", "<pre>",
                "</pre>", "<br/>", "</a>"):
        stripped = stripped.replace(tag, "")
    stripped = re.sub(r'<a href="(?:https?://|mailto:)[^"<>]*">', "", stripped)
    stripped = re.sub(r'<code class="language-[A-Za-z0-9_+\-]*">', "", stripped)
    assert "<" not in stripped


def test_room_pings_are_neutralised_in_body_and_html() -> None:
    content = message_content("hey @room and @ROOM, **look**")
    assert "@room" not in content["body"].lower()
    assert "@room" not in str(content["formatted_body"]).lower()
    assert content["body"].replace("\u2060", "") == "hey @room and @ROOM, **look**"


def test_plain_text_has_no_formatted_body() -> None:
    assert message_content("just words") == {"msgtype": "m.text", "body": "just words"}


@given(st.text(min_size=1, max_size=3000))
def test_split_keeps_every_character_within_limits(text: str) -> None:
    parts = split_text(text, 100, 150)
    assert all(len(p) <= 100 and len(p.encode()) <= 150 for p in parts)
    squash = lambda s: "".join(s.split())  # noqa: E731 - separators at cut points may be dropped
    assert squash("".join(parts)) == squash(text)


def test_split_prefers_paragraphs() -> None:
    assert split_text("a" * 60 + "\n\n" + "b" * 60, 100, 1000) == ["a" * 60, "b" * 60]


def test_transaction_ids_are_stable_per_content_and_part() -> None:
    a = transaction_id("matrix:$t", 0, "d1")
    assert a == transaction_id("matrix:$t", 0, "d1")
    assert a != transaction_id("matrix:$t", 1, "d1") != transaction_id("matrix:$t", 0, "d2")


# --------------------------------------------------------------------------- incoming text


def test_reply_fallback_is_stripped() -> None:
    assert strip_reply_fallback("> <@bob:hs> original\n> more\n\nmy answer") == "my answer"
    assert strip_reply_fallback("no quote here\n> later quote") == "no quote here\n> later quote"


def test_commands_are_normalised_to_the_core_prefix() -> None:
    assert normalise_command("!remind me at 5", ("!", "/"), "/") == "/remind me at 5"
    assert normalise_command("/help", ("!", "/"), "/") == "/help"
    assert normalise_command("!!! wow", ("!",), "/") == "!!! wow"
    assert normalise_command("!help", ("/",), "/") == "!help"


def test_inviters_are_matched_exactly_and_fail_closed() -> None:
    assert inviter_allowed("@alice:hs.test", ("@alice:hs.test",))
    assert inviter_allowed("@bob:hs.test", (":hs.test",))
    assert not inviter_allowed("@bob:evilhs.test", (":hs.test",))
    assert not inviter_allowed("@bob:hs.test.evil", (":hs.test",))
    assert not inviter_allowed("@alice:hs.test", ())
    assert not inviter_allowed("", (":hs.test",))


def test_pills_and_permalinks() -> None:
    assert mentions_user_link('<a href="https://matrix.to/#/@pai:hs.test">Pai</a>', "@pai:hs.test")
    assert mentions_user_link("https://matrix.to/#/%40pai%3Ahs.test", "@pai:hs.test")
    assert not mentions_user_link("https://matrix.to/#/@pai2:hs.test", "@pai:hs.test")
    assert not mentions_user_link("https://matrix.to/#/@pai:hs.testing", "@pai:hs.test")
    assert matrix_to("!r:hs", "$e") == "https://matrix.to/#/%21r:hs/%24e"


# --------------------------------------------------------------------------- conversion


def test_plain_message_converts_with_author_time_and_link() -> None:
    msg = to_message(event({"msgtype": "m.text", "body": "lunch?"}), ROOM, ME)
    assert msg is not None
    assert (msg.event_id, msg.id, msg.text) == ("matrix:$e1", "$e1", "lunch?")
    assert msg.author.display_name == "Alice" and not msg.author.is_bot
    assert msg.sent_at.year == 2027 and msg.sent_at.tzinfo is not None
    assert not msg.mentions_me and not msg.from_me


def test_intentional_mention_of_someone_else_does_not_trigger() -> None:
    msg = to_message(event({"msgtype": "m.text", "body": "ask bob", "m.mentions": {"user_ids": ["@bob:hs"]}}),
                     ROOM, ME)
    assert msg is not None and not msg.mentions_me


def test_the_bots_own_message_is_from_me_and_never_mentions_itself() -> None:
    msg = to_message(event({"msgtype": "m.text", "body": "I am Pai"}, sender=ME.user_id), ROOM, ME)
    assert msg is not None and msg.from_me and not msg.mentions_me and msg.author.is_bot


def test_reply_carries_the_quoted_message_and_flags_replies_to_the_bot() -> None:
    content = {"msgtype": "m.text", "body": "> <@pai:hs.test> hi\n\nthanks",
               "m.relates_to": {"m.in_reply_to": {"event_id": "$bot"}}}
    ev = event(content)
    assert replied_event_id(ev) == "$bot"
    msg = to_message(ev, ROOM, ME, Quoted("$bot", ME.user_id, "hi"))
    assert msg is not None and msg.text == "thanks" and msg.mentions_me
    assert msg.reply_to is not None and msg.reply_to.author is not None and msg.reply_to.author.is_bot


def test_unreadable_replied_event_still_gives_a_reply_ref() -> None:
    ev = event({"msgtype": "m.text", "body": "yes", "m.relates_to": {"m.in_reply_to": {"event_id": "$gone"}}})
    msg = to_message(ev, ROOM, ME, Quoted("$gone", "", ""))
    assert msg is not None and msg.reply_to is not None
    assert msg.reply_to.message_id == "$gone" and msg.reply_to.author is None and not msg.mentions_me


def test_edit_becomes_an_edited_message_with_the_original_id() -> None:
    content = {"msgtype": "m.text", "body": "* fixed",
               "m.new_content": {"msgtype": "m.text", "body": "fixed"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}
    msg = to_message(event(content, event_id="$edit"), ROOM, ME)
    assert msg is not None and msg.edited and msg.id == "$orig" and msg.event_id == "matrix:$edit"
    assert msg.text == "fixed"


def test_image_with_caption_and_encrypted_file() -> None:
    img = {"msgtype": "m.image", "body": "our whiteboard", "filename": "board.png", "url": "mxc://hs/abc",
           "info": {"mimetype": "image/png", "size": 1234}}
    msg = to_message(event(img), ROOM, ME)
    assert msg is not None and msg.text == "our whiteboard"
    assert [(a.kind, a.name, a.mime, a.size, a.source) for a in msg.attachments] == [
        ("image", "board.png", "image/png", 1234, "mxc://hs/abc")]
    enc = {"msgtype": "m.file", "body": "secret.pdf", "file": {"url": "mxc://hs/enc"}}
    msg = to_message(event(enc), ROOM, ME)
    assert msg is not None and msg.attachments == ()


def test_non_messages_and_redactions_are_skipped() -> None:
    member = {"type": "m.room.member", "event_id": "$m", "sender": "@a:hs", "content": {}}
    assert to_message(member, ROOM, ME) is None
    assert to_message(event({}), ROOM, ME) is None
    assert to_message(event({"msgtype": "m.location", "body": "here"}), ROOM, ME) is None


def test_factory_builds_a_chat_adapter_from_settings() -> None:
    from pathlib import Path

    from bot.config import parse_settings
    from bot.plugins import discover
    from bot.ports import AdapterEnv, ChatAdapter

    settings = parse_settings(
        "triggers: {command_prefixes: ['/']}\n"
        "adapters: {web: {enabled: false}, matrix: {enabled: true, homeserver: 'http://127.0.0.1:1',"
        " user_id: '@pai:hs.test', password: pw, allowed_inviters: [':hs.test']}}\n", env={})
    plugin = discover().adapters["matrix"].plugin
    env = AdapterEnv(bot_name="Pai", data_dir=Path("."), command_prefixes=settings.triggers.command_prefixes)
    adapter = plugin.create(settings.adapters.matrix, env)
    assert isinstance(adapter, ChatAdapter) and adapter.name == "matrix"
    caps = adapter.capabilities
    assert caps.edit and caps.threads and caps.files and caps.typing and caps.links and not caps.polls
